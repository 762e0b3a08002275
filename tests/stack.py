"""A whole stack in subprocesses (gunicorn web, Celery worker, optional beat) with its own settings.

It shares the session's Redis server (on a Redis database of its own, so its queues never
meet the session worker's), database and SMTP sink, so users made in-process can call it.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
_db_numbers = itertools.count(1)


class Stack:
    def __init__(self, tmp: Path, name: str, **env: str):
        self.tmp = tmp / name
        self.tmp.mkdir(parents=True, exist_ok=True)
        base_redis = os.environ["REDIS_URL"].rsplit("/", 1)[0]
        self.redis_url = f"{base_redis}/{next(_db_numbers) % 16 or 1}"
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

    def log(self, role: str) -> str:
        path = self.tmp / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_web(self, workers: int = 1) -> None:
        proc = self._spawn("web", ["gunicorn", "--worker-class", "gevent", "--workers", str(workers),
                                   "--bind", f"127.0.0.1:{self.port}", "api:create_app()"])

        def up():
            try:
                return requests.get(f"{self.url}/api/health", timeout=1).ok
            except requests.RequestException:
                return False
        wait_until(up, timeout=30, what="the stack's web server", proc=proc, log=self.tmp / "web.log")

    def start_worker(self, role: str = "worker", queues: str = "default,mail,files,llm,tts", pool: str = "prefork",
                     concurrency: int = 2) -> subprocess.Popen:
        proc = self._spawn(role, ["celery", "-A", "worker.celery_app", "worker", "-Q", queues, "-P", pool,
                                  "-c", str(concurrency), "--without-mingle", "--without-gossip",
                                  "-n", f"{role}-{self.port}@%h", "-l", "INFO"])
        import redis

        from shared import workers
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        wanted = set(queues.split(","))
        wait_until(lambda: workers.alive_queues(client) >= wanted, timeout=60, what=f"{role} to come up",
                   proc=proc, log=self.tmp / f"{role}.log")
        return proc

    def start_beat(self) -> None:
        self._spawn("beat", ["celery", "-A", "worker.celery_app", "beat", "--schedule",
                             str(self.tmp / "beat-schedule"), "-l", "WARNING"])

    def stop(self, role: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        proc = self.procs.pop(role, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def close(self) -> None:
        for role in list(self.procs):
            self.stop(role)
