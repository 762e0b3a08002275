"""Workers under hostile load: mail has a worker of its own, every task kind has a time limit, and a
hostile PDF is bounded per page and stops at once when cancelled.

Two stacks of real processes (devtools.stack), each on a database of its own: the Procfile's
layout with the default limits, and one with low limits whose mail goes to an SMTP server
that never answers. The hostile PDFs are made here: pages that all draw one large content
stream (a few KB of file, seconds of parsing per page).
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
import zlib

import pytest
import redis

from devtools.stack import PROCFILE_WORKERS, ROOT
from shared.celery_config import QUEUES
from tests.fire import (
    SWEEPER_ENV,
    UNTHROTTLED_ENV,
    Client,
    IsolatedDatabase,
    alive,
    start_default_layout,
)
from tests.support import wait_until


def hostile_pdf(pages: int, stream_bytes: int) -> bytes:
    """A PDF whose `pages` pages all draw one Flate-compressed content stream of `stream_bytes`."""
    op = b"BT /F1 12 Tf 72 712 Td (x) Tj ET\n"
    content = zlib.compress(op * (stream_bytes // len(op)), 9)
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(content), content)]
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents 4 0 R >>")
    objects += [page] * pages
    out, offsets = io.BytesIO(), []
    out.write(b"%PDF-1.4\n")
    for n, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (n, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def slow_pdf(pages: int = 40) -> bytes:
    """Within the per-page bound (900 KB of drawing per page), seconds per page: minutes in all."""
    return hostile_pdf(pages, 900_000)


def test_the_stacks_run_the_procfiles_worker_layout():
    """devtools.stack starts the workers the Procfiles name (queues and pools); mail and the sweeper
    (default) share a gevent worker that runs nothing CPU-bound."""
    for procfile in ("Procfile", "Procfile.dev"):
        lines = dict(line.split(": ", 1) for line in (ROOT / procfile).read_text().splitlines() if ": " in line)
        for role, (queues, pool, _) in PROCFILE_WORKERS.items():
            if role == "llm":
                assert lines[role] == "python -m worker.llm_worker"
                continue
            assert f"--queues {queues} " in lines[role] and f"--pool {pool} " in lines[role], (procfile, role)
        consumed = [q for role, (queues, _, _) in PROCFILE_WORKERS.items() for q in queues.split(",")]
        assert sorted(consumed) == sorted(QUEUES) and PROCFILE_WORKERS["mail"][0] == "mail,default", consumed


def _events(stack, job_id: str) -> list[str]:
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        return [fields["e"] for _, fields in r.xrange(f"job:{job_id}:events")]
    finally:
        r.close()


def _upload(client: Client, content: bytes) -> dict:
    answer = client.post("/api/upload/file", files={"file": (f"{uuid.uuid4().hex[:8]}.pdf", content,
                                                             "application/pdf")})
    assert answer.status == 202, answer.body
    return answer.body


def _job(database: IsolatedDatabase, job_id: str):
    return database.rows("SELECT state, attempts, error, lease_owner FROM jobs WHERE id = :i", i=job_id)[0]


def _file(database: IsolatedDatabase, file_id: str):
    return database.rows("SELECT status, error FROM files WHERE id = :i", i=file_id)[0]


def _code(error) -> str | None:
    return (json.loads(error) if isinstance(error, str) else error or {}).get("code")


def _assert_stopped_once(stack, database, job_id: str, code: str, settle: float = 3.5) -> None:
    """The job ended `failed` with `code` after one run, with one `error` event, and stays so over several sweeps."""
    time.sleep(settle)  # several sweeps (SWEEP_INTERVAL_SECONDS=1) and past the lease (4 s)
    state, attempts, error, _ = _job(database, job_id)
    assert (state, attempts, _code(error)) == ("failed", 1, code), (state, attempts, error)
    names = _events(stack, job_id)
    assert names.count("error") == 1 and "restarted" not in names and "done" not in names, names


@pytest.fixture(scope="module")
def layout(make_stack, smtp, tmp_path_factory):
    """The Procfile's layout, default limits; mail to the session's SMTP sink."""
    database = IsolatedDatabase(tmp_path_factory.mktemp("layout-db"))
    stack = make_stack("layout", DATABASE_URL=database.url, **SWEEPER_ENV, **UNTHROTTLED_ENV)
    start_default_layout(stack)
    yield stack, database
    stack.close()
    database.close()


@pytest.mark.slow
def test_mail_is_not_starved_by_long_file_jobs_and_a_hostile_pdf_stops_within_5s_of_cancel(layout, smtp):
    """Two slow PDFs keep the files worker's pool busy; sign-up mails still arrive within 5 s. A
    cancel fails each file within 5 s, and one cancelled while queued is failed when its message comes."""
    stack, database = layout
    user = database.user()
    client = Client(stack.url, token=user["access_token"])
    uploads = [_upload(client, slow_pdf(pages)) for pages in (40, 41)]  # both pool processes of the files worker
    for job_id in (up["job_id"] for up in uploads):
        wait_until(lambda j=job_id: _job(database, j)[0] == "running", timeout=15, what="the file job to start")
    for _ in range(2):  # twice, a sign-up mail each time, while both stay busy
        address = f"starved-{uuid.uuid4().hex[:10]}@example.com"
        t0 = time.monotonic()
        assert client.post("/api/auth/send-code", json={"email": address, "purpose": "register"}).status == 202
        smtp.wait_for(address, timeout=30)
        took = time.monotonic() - t0
        assert took < 5, f"a sign-up mail took {took:.1f} s while file jobs ran"
        assert all(_job(database, up["job_id"])[0] == "running" for up in uploads), "the file jobs ended early"
    waiting = _upload(client, slow_pdf(42))  # queued behind them: cancelled before it runs
    assert client.call("DELETE", f"/api/jobs/{waiting['job_id']}").status == 200
    for up in uploads:
        t0 = time.monotonic()
        answer = client.call("DELETE", f"/api/jobs/{up['job_id']}")
        assert answer.status == 200 and answer.body["state"] == "cancelled", answer.body
        wait_until(lambda f=up["file"]["id"]: _file(database, f)[0] == "failed", timeout=10, interval=0.1,
                   what="the cancelled file to be failed")
        took = time.monotonic() - t0
        assert took < 5, f"the cancelled file was failed {took:.1f} s after the cancel"
        assert _code(_file(database, up["file"]["id"])[1]) == "cancelled"
        assert client.get(f"/api/files/{up['file']['id']}").body["status"] == "failed"
    # Its message reaches a pool process freed by those cancels: the file says cancelled too.
    wait_until(lambda: _file(database, waiting["file"]["id"])[0] == "failed", timeout=5, interval=0.1,
               what="the file cancelled while queued to be failed")
    assert _code(_file(database, waiting["file"]["id"])[1]) == "cancelled"


@pytest.mark.slow
def test_the_reviewers_pdf_three_pages_sharing_2mb_is_refused_at_once(layout):
    stack, database = layout
    client = Client(stack.url, token=database.user()["access_token"])
    up = _upload(client, hostile_pdf(3, 2 * 1024 * 1024))
    t0 = time.monotonic()
    wait_until(lambda: _file(database, up["file"]["id"])[0] == "failed", timeout=15, what="the PDF to be failed")
    assert time.monotonic() - t0 < 5
    error = _file(database, up["file"]["id"])[1]
    assert _code(error) == "too_complex" and _job(database, up["job_id"])[0] == "failed", error


@pytest.mark.slow
def test_readiness_names_the_mail_queue_when_the_mail_worker_is_gone(layout):
    """The queues of the mail worker (mail, and default: the sweeper) are named, and no other."""
    stack, _ = layout
    client = Client(stack.url)
    assert client.get("/api/health/ready").status == 200
    stack.stop("mail")
    wait_until(lambda: client.get("/api/health/ready").status == 503, timeout=20,
               what="readiness to notice the mail worker is gone")
    answer = client.get("/api/health/ready")
    checks = answer.body["error"]["details"]
    gone = {f"queue:{q}" for q in PROCFILE_WORKERS["mail"][0].split(",")}  # mail, and the sweeper's default
    assert all(checks[k] != "ok" for k in gone) and all(v == "ok" for k, v in checks.items() if k not in gone), checks


class SilentSMTP:
    """A TCP server that accepts connections and never says a word (an SMTP server that hangs)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(scope="module")
def limited(make_stack, tmp_path_factory):
    """Low limits: files 2 s (+1 s grace), mail 1 s (+1 s) to an SMTP server that hangs for 30 s,
    chat 1 s (+1 s) for replies of 8 s (echo, 5 tokens/s)."""
    silent = SilentSMTP()
    database = IsolatedDatabase(tmp_path_factory.mktemp("limits-db"))
    stack = make_stack("limits", DATABASE_URL=database.url, FILES_TIME_LIMIT="2", MAIL_TIME_LIMIT="1",
                       CHAT_TIME_LIMIT="1", TIME_LIMIT_GRACE="1", LLM_ECHO_RATE="5", LLM_ECHO_TOKENS="40",
                       MAIL_SERVER="127.0.0.1", MAIL_PORT=str(silent.port), MAIL_TIMEOUT="30",
                       **SWEEPER_ENV, **UNTHROTTLED_ENV)
    stack.start_procfile_workers()
    stack.start_beat()
    stack.start_web()
    yield stack, database
    stack.close()
    database.close()
    silent.close()


@pytest.mark.slow
def test_a_job_over_its_soft_limit_fails_with_time_limit_once(limited):
    """prefork, soft limit: the file job stops at its deadline, file and job `failed` with `time_limit`."""
    stack, database = limited
    client = Client(stack.url, token=database.user()["access_token"])
    up = _upload(client, slow_pdf())
    t0 = time.monotonic()
    wait_until(lambda: _job(database, up["job_id"])[0] == "failed", timeout=20, what="the job to hit its limit")
    assert time.monotonic() - t0 < 10
    assert _code(_file(database, up["file"]["id"])[1]) == "time_limit"
    _assert_stopped_once(stack, database, up["job_id"], "time_limit")


@pytest.mark.slow
def test_a_job_past_its_hard_limit_is_killed_failed_once_and_never_run_again(limited):
    """prefork, hard limit: a pool child that cannot take the soft limit's signal (stopped, as one
    stuck in C code) is killed; the job is failed by the parent and neither the redelivered message
    nor the sweeper (its lease expires) runs it again; the pool goes on with a new child."""
    stack, database = limited
    client = Client(stack.url, token=database.user()["access_token"])
    up = _upload(client, slow_pdf())
    owner = wait_until(lambda: _job(database, up["job_id"])[3], timeout=15, what="the job to start")
    pid = int(owner.rpartition(":")[2])
    time.sleep(0.5)  # into the PDF's pages
    for _ in range(10):  # stopped outside a write transaction (its lease renewal's): SQLite stays writable
        os.kill(pid, signal.SIGSTOP)
        if _writable(database):
            break
        os.kill(pid, signal.SIGCONT)
    try:
        wait_until(lambda: _job(database, up["job_id"])[0] == "failed", timeout=20, what="the hard limit")
        wait_until(lambda: not alive(pid), timeout=10, what="the stuck pool child to be killed")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGCONT)
    assert "hard time limit" in str(_job(database, up["job_id"])[2])
    assert _code(_file(database, up["file"]["id"])[1]) == "time_limit"
    _assert_stopped_once(stack, database, up["job_id"], "time_limit", settle=5)
    from tests import documents
    after = _upload(client, documents.pdf(["The pool replaced its killed child and goes on."]))
    wait_until(lambda: _file(database, after["file"]["id"])[0] == "ready", timeout=30, what="a later file")


def _writable(database: IsolatedDatabase) -> bool:
    """Whether a write transaction can start at once (SQLite has one writer at a time)."""
    if not database.url.startswith("sqlite"):
        return True
    import sqlite3
    conn = sqlite3.connect(database.url.removeprefix("sqlite:///"), timeout=0.2, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


@pytest.mark.slow
def test_mail_on_its_gevent_pool_is_stopped_by_its_hard_limit_once(limited):
    """gevent, hard limit: a mail stuck on an SMTP server that never answers fails with `time_limit`
    at its limit (not after the 30 s socket timeout and retries), once."""
    stack, database = limited
    client = Client(stack.url)
    answer = client.post("/api/auth/send-code", json={"email": f"hang-{uuid.uuid4().hex[:8]}@example.com",
                                                      "purpose": "register"})
    assert answer.status == 202, answer.body
    job_id = answer.body["job_id"]
    t0 = time.monotonic()
    wait_until(lambda: _job(database, job_id)[0] == "failed", timeout=20, what="the mail job to hit its limit")
    assert time.monotonic() - t0 < 8
    assert re.search(r"hard time limit of 2 s", str(_job(database, job_id)[2])), _job(database, job_id)
    _assert_stopped_once(stack, database, job_id, "time_limit")


@pytest.mark.slow
def test_a_reply_on_the_llm_workers_gevent_pool_meets_its_deadline_once(limited):
    """gevent, soft limit as a deadline the reply checks with each token: the job fails with
    `time_limit` at 1 s (of an 8 s reply), the reply keeps what it streamed, marked failed."""
    stack, database = limited
    client = Client(stack.url, token=database.user()["access_token"])
    answer = client.post("/api/chat/send", json={"message": "Tell me a long story."},
                         headers={"Idempotency-Key": uuid.uuid4().hex})
    assert answer.status == 202, answer.body
    t0 = time.monotonic()
    wait_until(lambda: _job(database, answer.body["job_id"])[0] == "failed", timeout=20, what="the reply's deadline")
    assert time.monotonic() - t0 < 5
    assert "time limit of 1 s" in str(_job(database, answer.body["job_id"])[2])
    status, content = database.rows("SELECT status, content FROM messages WHERE id = :i",
                                    i=answer.body["reply_message_id"])[0]
    assert status == "failed" and 0 < len(content.split()) < 40, (status, content)
    _assert_stopped_once(stack, database, answer.body["job_id"], "time_limit")
