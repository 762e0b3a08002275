"""Helpers for the "proof under fire" suites (crashes, Redis outage, contention, soak, fuzz).

- `IsolatedDatabase`: a migrated database of its own for one stack, so that no other beat's
  sweeper (the session's, or another module's stack) can touch the jobs a suite counts;
  it also makes users and tokens directly, and reads rows for the assertions.
- `Client`: a small HTTP client for a stack, bounded by timeouts, that records every answer.
- /proc readers: children, RSS.
Everything talks to 127.0.0.1 only.
"""
from __future__ import annotations

import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

from tests.support import bearer, parse_sse

LONG = os.environ.get("MENTOR_LONG_TESTS") == "1"

# Settings every fire stack passes explicitly (the sweeper's, as in conftest's TEST_ENV).
SWEEPER_ENV = {"SWEEP_INTERVAL_SECONDS": "1", "JOB_LEASE_SECONDS": "4", "JOB_HEARTBEAT_SECONDS": "1"}
# Per-IP limits count every request of a suite as one client (127.0.0.1), and its users chat far
# faster than a person: lift them.
UNTHROTTLED_ENV = {"RATELIMIT_SEND_CODE_IP": "100000/hour", "RATELIMIT_SEND_CODE_EMAIL": "100/minute",
                   "RATELIMIT_AUTH": "100000/minute", "MAX_ACTIVE_JOBS_PER_KIND": "100000",
                   "CHAT_RATE_LIMIT": "100000/minute", "TTS_RATE_LIMIT": "100000/minute",
                   "UPLOAD_RATE_LIMIT": "100000/hour", "SEARCH_RATE_LIMIT": "100000/minute"}


class IsolatedDatabase:
    """A fresh, migrated database (a SQLite file, or a PostgreSQL database beside the session's)."""

    def __init__(self, folder: Path):
        from tests.conftest import TEST_ENV, USING_POSTGRES
        self._pg_admin = None
        if USING_POSTGRES:
            base = TEST_ENV["DATABASE_URL"]
            self._pg_name = f"fire_{uuid.uuid4().hex[:10]}"
            self._pg_admin = create_engine(_sqlalchemy_url(base), isolation_level="AUTOCOMMIT")
            with self._pg_admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self._pg_name}"'))
            self.url = base.rsplit("/", 1)[0] + "/" + self._pg_name
        else:
            folder.mkdir(parents=True, exist_ok=True)
            self.url = f"sqlite:///{folder / 'fire.db'}"
        from flask_migrate import upgrade

        from api import create_app
        self.app = create_app({"DATABASE_URL": self.url, "TESTING": True})
        with self.app.app_context():
            upgrade()
        self.engine = create_engine(_sqlalchemy_url(self.url))

    def rows(self, sql: str, **params) -> list:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def scalar(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def user(self, role: str = "student", password: str = "correct horse battery") -> dict:
        """A user written directly, with a token pair as login would issue."""
        from api.services.accounts import issue_tokens
        from api.services.passwords import hash_password
        from shared.database import db, utcnow, write_tx
        from shared.models import User
        email = f"fire-{uuid.uuid4().hex[:12]}@example.com"
        with self.app.app_context():
            with write_tx():
                user = User(email=email, password_hash=hash_password(password), role=role, email_verified_at=utcnow())
                db.session.add(user)
            tokens = issue_tokens(user)
            user_id = user.id
            db.session.remove()
        return {"id": user_id, "email": email, "password": password, **tokens}

    def close(self) -> None:
        self.engine.dispose()
        with self.app.app_context():
            from shared.database import db
            db.engine.dispose()
        if self._pg_admin is not None:
            with self._pg_admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)'))
            self._pg_admin.dispose()


def _sqlalchemy_url(url: str) -> str:
    from shared.database import normalise_url
    return normalise_url(url)


@dataclass
class Answer:
    method: str
    path: str
    status: int  # 0: no answer (connection error or timeout)
    seconds: float
    started: float  # time.time()
    body: object = None


@dataclass
class Client:
    """requests against one stack; every call is timed and kept (thread-safe)."""
    base: str
    token: str | None = None
    timeout: float = 10.0
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self):
        self._local = threading.local()
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        s = getattr(self._local, "s", None)
        if s is None:
            s = self._local.s = requests.Session()
        return s

    def call(self, method: str, path: str, token: str | None = None, **kw) -> Answer:
        headers = {**(bearer(token or self.token) if (token or self.token) else {}), **kw.pop("headers", {})}
        started, t0 = time.time(), time.monotonic()
        try:
            r = self._session().request(method, self.base + path, headers=headers, timeout=self.timeout, **kw)
            try:
                body = r.json()
            except ValueError:
                body = r.text[:500]
            answer = Answer(method, path, r.status_code, time.monotonic() - t0, started, body)
        except requests.RequestException as exc:
            answer = Answer(method, path, 0, time.monotonic() - t0, started, repr(exc))
        with self._lock:
            self.answers.append(answer)
        return answer

    def get(self, path, **kw) -> Answer:
        return self.call("GET", path, **kw)

    def post(self, path, **kw) -> Answer:
        return self.call("POST", path, **kw)

    def put(self, path, **kw) -> Answer:
        return self.call("PUT", path, **kw)

    def events(self, events_url: str) -> list[dict]:
        """A finished job's SSE events (its stream is replayed without waiting)."""
        r = self._session().get(self.base + events_url, timeout=self.timeout)
        assert r.status_code == 200, r.text
        return parse_sse(r.text)

    def server_errors(self) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.status >= 500 or a.status == 0]


def event_time(entry_id: str) -> float:
    """The wall-clock time (s) at which Redis stored a stream entry: its id is `<ms>-<seq>`."""
    return int(entry_id.split("-", 1)[0]) / 1000.0


def wait_jobs_settled(db: IsolatedDatabase, job_ids: list[str], timeout: float) -> dict[str, str]:
    """Wait until none of `job_ids` is queued or running; returns id -> state (also on timeout)."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while True:
        states = job_states(db, job_ids)
        if all(s not in ("queued", "running") for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.25)


def job_states(db: IsolatedDatabase, job_ids: list[str]) -> dict[str, str]:
    states: dict[str, str] = {jid: "missing" for jid in job_ids}
    for i in range(0, len(job_ids), 500):
        chunk = job_ids[i:i + 500]
        params = {f"j{n}": jid for n, jid in enumerate(chunk)}
        marks = ",".join(f":j{n}" for n in range(len(chunk)))
        for row in db.rows(f"SELECT id, state FROM jobs WHERE id IN ({marks})", **params):
            states[row[0]] = row[1]
    return states


def explain_unsettled(stack, database: IsolatedDatabase, not_ok: dict[str, str]) -> str:
    """Where jobs that did not succeed are: rows, last events, whether the broker still has them, log lines."""
    import redis

    from shared.celery_config import QUEUES
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    detail = []
    for jid in list(not_ok)[:5]:
        row = database.rows("SELECT kind, state, attempts, created_at, dispatched_at, started_at, lease_owner, error "
                            "FROM jobs WHERE id = :i", i=jid)
        detail.append((jid, [tuple(x) for x in row], [f["e"] for _, f in r.xrange(f"job:{jid}:events")][-3:],
                       grep_logs(stack, jid)))
    unacked = [jid for jid in not_ok if any(jid in v for v in r.hvals("unacked"))]
    queued = [jid for jid in not_ok if any(jid in m for q in QUEUES for m in r.lrange(q, 0, -1))]
    r.close()
    trouble = {k: v[:2] for k, v in grep_logs(stack, r"Connection to broker lost|Couldn't ack").items()}
    return (f"{len(not_ok)} accepted job(s) did not succeed: {detail}; in the broker's unacked set: {unacked}; "
            f"still in a queue: {queued}; broker connection trouble in the logs: {trouble}")


# --- processes, from /proc ---

def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_kb(pid: int) -> int | None:
    try:
        match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def alive(pid: int) -> bool:
    try:
        state = re.search(r"^State:\s+(\S)", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return False
    return bool(state) and state.group(1) != "Z"


def log_marks(stack) -> dict[str, int]:
    """The current size of each of the stack's logs, for `grep_logs(..., since=)`."""
    return {path.name: path.stat().st_size for path in stack.tmp.glob("*.log")}


def grep_logs(stack, pattern: str, since: dict[str, int] | None = None) -> dict[str, list[str]]:
    """Lines matching `pattern` (a regex, case-insensitive) in each of the stack's logs (after `since`)."""
    found: dict[str, list[str]] = {}
    rx = re.compile(pattern, re.I)
    for path in sorted(stack.tmp.glob("*.log")):
        with open(path, "rb") as f:
            f.seek((since or {}).get(path.name, 0))
            text_ = f.read().decode(errors="replace")
        lines = [line for line in text_.splitlines() if rx.search(line)]
        if lines:
            found[path.name] = lines
    return found


POOL_TROUBLE = r"MaxConnectionsError|Couldn't ack|Connection to broker lost"


def start_default_layout(stack) -> None:
    """The Procfile's processes: its workers (prefork for files,tts; gevent for mail and the
    sweeper, and for the llm worker's remote providers), beat, 2 web workers."""
    stack.start_procfile_workers()
    stack.start_beat()
    stack.start_web(workers=2)
