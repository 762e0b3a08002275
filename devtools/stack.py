"""A whole stack in subprocesses (Redis, gunicorn web, Celery workers, beat) on free ports.

Used by the tests (which share their Redis server, database and SMTP sink with a stack, on
a Redis database of its own) and by the benchmarks (which start everything themselves).
"""
from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = str(ROOT / "api" / "gunicorn_worker.py")  # the gevent workers of both Procfiles
# The Procfile's worker processes: role -> (queues, pool, concurrency). The llm worker's pool is
# the one worker.llm_worker picks for a remote (or the echo) provider.
# The sweeper (default queue) shares the mail worker's gevent pool: CPU-bound files and tts jobs
# cannot hold up the recovery of lost jobs, nor sign-up mail.
PROCFILE_WORKERS = {"worker": ("files,tts", "prefork", 2), "mail": ("mail,default", "gevent", 20),
                    "llm": ("llm", "gevent", 200)}
_db_numbers = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float = 10.0, interval: float = 0.05, what: str = "a condition",
               proc=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


def start_redis(folder: Path, port: int | None = None, appendonly: bool = False) -> tuple[subprocess.Popen, str]:
    """A redis-server of our own on a free loopback port; returns the process and its URL."""
    import shutil

    import redis
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run scripts/ensure-redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes" if appendonly else "no", "--dir", str(folder)],
                            stdout=open(folder / "redis.log", "ab"), stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)

    def pings():
        try:
            return client.ping()
        except redis.RedisError:
            return False
    wait_until(pings, timeout=10, what="redis-server", proc=proc, log=folder / "redis.log")
    return proc, f"redis://127.0.0.1:{port}/0"


class Stack:
    def __init__(self, tmp: Path, name: str, redis_url: str | None = None, **env: str):
        """Share the Redis server of REDIS_URL (on a database of its own) unless `redis_url` is given."""
        self.tmp = tmp / name
        self.tmp.mkdir(parents=True, exist_ok=True)
        if redis_url is None:
            base_redis = os.environ["REDIS_URL"].rsplit("/", 1)[0]
            redis_url = f"{base_redis}/{next(_db_numbers) % 16 or 1}"
        self.redis_url = redis_url
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": self.redis_url, **env}
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _spawn(self, role: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{role}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=str(self.tmp), env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[role] = proc
        return proc

    def pids(self) -> dict[str, list[int]]:
        """Each role's process and its children (gunicorn and prefork workers fork)."""
        out = {}
        for role, proc in self.procs.items():
            pids = [proc.pid]
            try:
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                pids += [int(c) for c in children]
            except OSError:
                pass
            out[role] = pids
        return out

    def log(self, role: str) -> str:
        path = self.tmp / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_web(self, workers: int = 1, app: str = "api:create_app()", health: str = "/api/health") -> None:
        proc = self._spawn("web", ["gunicorn", "--config", GUNICORN_CONFIG, "--workers", str(workers),
                                   "--worker-connections", "4000", "--backlog", "4096",
                                   "--bind", f"127.0.0.1:{self.port}", app])

        def up():
            try:
                return requests.get(f"{self.url}{health}", timeout=1).ok
            except requests.RequestException:
                return False
        wait_until(up, timeout=30, what="the stack's web server", proc=proc, log=self.tmp / "web.log")

    def start_worker(self, role: str = "worker", queues: str = "default,mail,files,llm,tts", pool: str = "prefork",
                     concurrency: int = 2, app: str = "worker.celery_app", wait: bool = True) -> subprocess.Popen:
        proc = self._spawn(role, ["celery", "-A", app, "worker", "-Q", queues, "-P", pool,
                                  "-c", str(concurrency), "--without-mingle", "--without-gossip",
                                  "-n", f"{role}-{self.port}@%h", "-l", "INFO"])
        if wait:
            self.wait_for_worker(role, queues)
        return proc

    def wait_for_worker(self, role: str, queues: str) -> None:
        """Until a live worker consumes each of `queues` (comma-separated)."""
        import redis

        from shared import workers
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        wanted = set(queues.split(","))
        wait_until(lambda: workers.alive_queues(client) >= wanted, timeout=60, what=f"{role} to come up",
                   proc=self.procs[role], log=self.tmp / f"{role}.log")
        client.close()

    def start_procfile_workers(self) -> None:
        """The Procfile's worker processes (PROCFILE_WORKERS), started together, then each waited for."""
        for role, (queues, pool, concurrency) in PROCFILE_WORKERS.items():
            self.start_worker(role=role, queues=queues, pool=pool, concurrency=concurrency, wait=False)
        for role, (queues, _, _) in PROCFILE_WORKERS.items():
            self.wait_for_worker(role, queues)

    def start_beat(self) -> None:
        self._spawn("beat", ["celery", "-A", "worker.celery_app", "beat", "--schedule",
                             str(self.tmp / "beat-schedule"), "-l", "WARNING"])

    def stop(self, role: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        proc = self.procs.pop(role, None)
        if proc is not None and _signal(proc, sig):
            _reap(proc, timeout)

    def close(self) -> None:
        """Stop every process: all are signalled at once, then each is waited for (killed after 20 s)."""
        procs = [self.procs.pop(role) for role in list(self.procs)]
        for proc in [p for p in procs if _signal(p, signal.SIGTERM)]:
            _reap(proc, 20)


def _signal(proc: subprocess.Popen, sig: int) -> bool:
    """Signal the process's group; False when it has already ended."""
    if proc.poll() is not None:
        return False
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _reap(proc: subprocess.Popen, timeout: float) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
