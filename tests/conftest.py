"""Test fixtures: real parts only.

The session starts its own Redis server and SMTP server (aiosmtpd) on free loopback ports,
a database (a SQLite file, or the PostgreSQL named by DATABASE_URL), migrates it, and runs
a real Celery worker as a subprocess. Nothing is eager, nothing is mocked.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support import SMTPSink, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
_TMP = Path(tempfile.mkdtemp(prefix="mentor-tests-"))
_REDIS_PORT = free_port()
_SMTP_PORT = free_port()

# Settings are read from the environment once per process: set them before anything imports them.
TEST_ENV = {
    "APP_ENV": "testing",
    "SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex,
    "JWT_SECRET_KEY": "test-jwt-secret-" + uuid.uuid4().hex,
    "REDIS_URL": f"redis://127.0.0.1:{_REDIS_PORT}/0",
    "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{_TMP / 'test.db'}",
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_PORT": str(_SMTP_PORT),
    "MAIL_DEFAULT_SENDER": "Mentor Tests <no-reply@tests.local>",
    "CORS_ORIGINS": "http://frontend.test",
    "SWEEP_INTERVAL_SECONDS": "1",
    "JOB_LEASE_SECONDS": "4",
    "JOB_HEARTBEAT_SECONDS": "1",
    "LOG_LEVEL": "WARNING",
    "STORAGE_DIR": str(_TMP / "storage"),
    "RATELIMIT_SEND_CODE_EMAIL": "3/minute",  # per address and purpose; a test signs up, then asks again
    "LLM_PROVIDER": "echo",
    "LLM_ECHO_RATE": "100",
    "LLM_ECHO_TOKENS": "10",
    "CHAT_MAX_MESSAGE_CHARS": "2000",
    "TTS_ENGINE": "espeak",
}
os.environ.update(TEST_ENV)

USING_POSTGRES = TEST_ENV["DATABASE_URL"].startswith("postgres")


def pytest_report_header(config):
    return f"database: {'PostgreSQL' if USING_POSTGRES else 'SQLite'} ({TEST_ENV['DATABASE_URL']}); tmp: {_TMP}"


def pytest_collection_finish(session):
    os.chdir(_TMP)  # after collection: no test writes into the work tree, nor reads its .env


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.exit("redis-server is not installed: run `make test` (it installs it) or scripts/ensure-redis", 2)
    data = _TMP / "redis"
    data.mkdir()
    proc = subprocess.Popen(
        [binary, "--port", str(_REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis
    client = redis.Redis(port=_REDIS_PORT)
    wait_until(lambda: _pings(client), timeout=10, what="redis-server to start")
    yield TEST_ENV["REDIS_URL"]
    proc.terminate()
    proc.wait(10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def smtp():
    sink = SMTPSink(port=_SMTP_PORT)
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def app(redis_server, smtp):
    from flask_migrate import upgrade

    from api import create_app
    app = create_app({"TESTING": True})
    with app.app_context():
        upgrade()
    return app


def _celery_proc(args: list[str], log_name: str) -> subprocess.Popen:
    log = open(_TMP / log_name, "wb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.celery_app", *args],
                            cwd=str(_TMP), env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="session")
def worker(app):
    """A real Celery worker (prefork, 2 processes) on every queue."""
    from shared import workers
    from shared.celery_config import QUEUES
    from shared.redis_client import get_redis
    proc = _celery_proc(["worker", "-Q", ",".join(QUEUES), "-c", "2", "-P", "prefork", "--without-mingle",
                         "--without-gossip", "-n", f"test-{uuid.uuid4().hex[:8]}@%h", "-l", "WARNING"],
                        "worker.log")
    try:
        wait_until(lambda: workers.alive_queues(get_redis()) >= set(QUEUES), timeout=60,
                   what="the Celery worker to come up", proc=proc, log=_TMP / "worker.log")
    except Exception:
        proc.kill()
        raise
    yield proc
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def beat(worker):
    """Celery beat, for the sweeper (every SWEEP_INTERVAL_SECONDS)."""
    proc = _celery_proc(["beat", "--schedule", str(_TMP / "beat-schedule"), "-l", "WARNING"], "beat.log")
    yield proc
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def live_server(app):
    """The API under gunicorn with the Procfiles' gevent workers (api/gunicorn_worker.py), on a free port."""
    import requests

    from devtools.stack import GUNICORN_CONFIG
    port = free_port()
    log = open(_TMP / "gunicorn.log", "wb")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SSE_KEEPALIVE_SECONDS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG, "--workers", "1",
                             "--bind", f"127.0.0.1:{port}", "api:create_app()"],
                            cwd=str(_TMP), env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(f"{base}/api/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False
    wait_until(up, timeout=30, what="gunicorn to serve", proc=proc, log=_TMP / "gunicorn.log")
    yield base
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def make_stack(app):
    """make_stack(name, **env) -> a tests.stack.Stack, closed at the end of the module."""
    from devtools.stack import Stack
    stacks = []

    def make(name: str, **env: str) -> Stack:
        stack = Stack(_TMP, f"{name}-{uuid.uuid4().hex[:6]}", **env)
        stacks.append(stack)
        return stack
    yield make
    for stack in stacks:
        stack.close()


@pytest.fixture()
def client(app):
    """A test client with its own source IP, so per-IP limits of one test never touch another."""
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    return c


@pytest.fixture()
def users(client, smtp, worker):
    """A factory of signed-up users: users() -> dict(email, password, access_token, refresh_token, id)."""
    from tests.support import sign_up
    return lambda **kw: sign_up(client, smtp, **kw)
