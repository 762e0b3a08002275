"""Sustained concurrent writes on SQLite with the default process layout.

As Procfile.dev runs it: gunicorn with 2 gevent workers, a prefork worker (2 processes) on
files,tts, a gevent worker on mail,default, the llm worker (a gevent pool of 200, since the provider is
remote-like: echo) and beat. 20 threads, each a user, post chat messages (new and continued
conversations) and profile updates, and read history, for ~20 s. Then: no 5xx and no hung
request; no "database is locked" in any log; no lost write: every 202 has its user message
and its whole reply in the history, in order, the database holds exactly twice as many
messages as accepted sends, and each profile shows the last update its owner made.
"""
from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
import requests

from shared.payloads import MailPayload
from tests.fire import (
    LONG,
    POOL_TROUBLE,
    SWEEPER_ENV,
    UNTHROTTLED_ENV,
    Client,
    IsolatedDatabase,
    explain_unsettled,
    grep_logs,
    log_marks,
    start_default_layout,
    wait_jobs_settled,
)
from tests.support import bearer, parse_sse

pytestmark = pytest.mark.slow

THREADS = 20
SECONDS = 120.0 if LONG else 20.0
ECHO_TOKENS = 40
FULL_REPLY = "".join(f"tok{i} " for i in range(ECHO_TOKENS))


@pytest.fixture(scope="module")
def layout(make_stack, tmp_path_factory):
    database = IsolatedDatabase(tmp_path_factory.mktemp("contention-db"))
    stack = make_stack("contention", DATABASE_URL=database.url, LLM_PROVIDER="echo", LLM_ECHO_RATE="50",
                       LLM_ECHO_TOKENS=str(ECHO_TOKENS), SSE_KEEPALIVE_SECONDS="2", **SWEEPER_ENV,
                       **UNTHROTTLED_ENV,
                       # The open-streams test holds jobs that were never sent: not "lost" while it runs.
                       REQUEUE_LOST_AFTER="600",
                       MAX_STREAMS_PER_USER=str(STREAMS))  # its one user follows them all at once
    start_default_layout(stack)
    yield stack, database
    stack.close()
    database.close()


class Writer(threading.Thread):
    """One user writing as fast as the server answers, until the deadline (or a bound on requests)."""

    def __init__(self, client: Client, user: dict, deadline: float, seed: int):
        super().__init__(daemon=True)
        self.client, self.user, self.deadline = client, user, deadline
        self.rng = random.Random(seed)
        self.conversations: dict[str, list[dict]] = {}  # id -> accepted sends, in order
        self.current: str | None = None
        self.last_bio: str | None = None
        self.profile_writes = 0

    def run(self):
        for n in range(5000):
            if time.monotonic() > self.deadline:
                return
            roll = self.rng.random()
            if roll < 0.5:
                self.chat(n)
            elif roll < 0.85:
                bio = f"bio {n} {uuid.uuid4().hex}"
                a = self.client.put("/api/user/profile", token=self.user["access_token"], json={"bio": bio})
                if a.status == 200:
                    self.last_bio = bio
                    self.profile_writes += 1
            elif self.current:
                self.client.get(f"/api/chat/history?conversation_id={self.current}&limit=5",
                                token=self.user["access_token"])

    def chat(self, n: int):
        body = {"message": f"message {n} {uuid.uuid4().hex[:8]}"}
        if self.current and self.rng.random() < 0.75:
            body["conversation_id"] = self.current
        a = self.client.post("/api/chat/send", token=self.user["access_token"], json=body)
        if a.status == 202:
            self.current = a.body["conversation_id"]
            self.conversations.setdefault(self.current, []).append({**a.body, "message": body["message"]})


def history(client: Client, token: str, conversation_id: str) -> list[dict]:
    """Every message of a conversation, oldest first, through the cursor."""
    items, before = [], None
    for _ in range(100):
        path = f"/api/chat/history?conversation_id={conversation_id}&limit=200"
        path += f"&before={before}" if before else ""
        a = client.get(path, token=token)
        assert a.status == 200, a.body
        items = a.body["items"] + items
        if not a.body["has_more"]:
            return items
        before = a.body["next_before"]
    raise AssertionError("history paging did not end")


def test_concurrent_writes_on_sqlite_lose_nothing_and_never_lock(layout):
    stack, database = layout
    users = [database.user() for _ in range(THREADS)]
    client = Client(stack.url, timeout=30)
    marks = log_marks(stack)
    deadline = time.monotonic() + SECONDS
    writers = [Writer(client, u, deadline, seed=i) for i, u in enumerate(users)]
    started = time.monotonic()
    for w in writers:
        w.start()
    for w in writers:
        w.join(SECONDS + 60)
    elapsed = time.monotonic() - started
    assert not any(w.is_alive() for w in writers), "a writer thread hung"

    answers = list(client.answers)
    by_status: dict[int, int] = {}
    for a in answers:
        by_status[a.status] = by_status.get(a.status, 0) + 1
    latencies = sorted(a.seconds for a in answers)
    sends = [s for w in writers for c in w.conversations.values() for s in c]
    print(f"\n{len(answers)} requests in {elapsed:.1f} s ({len(answers) / elapsed:.0f}/s) by {THREADS} threads: "
          f"statuses {by_status}; latency p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
          f"accepted sends {len(sends)}, profile writes {sum(w.profile_writes for w in writers)}")
    assert not client.server_errors(), [(a.method, a.path, a.status, a.body) for a in client.server_errors()[:10]]
    assert set(by_status) <= {200, 202}, by_status

    states = wait_jobs_settled(database, [s["job_id"] for s in sends], timeout=60)
    not_ok = {j: s for j, s in states.items() if s != "succeeded"}
    assert not not_ok, explain_unsettled(stack, database, not_ok)

    # No lost write: each conversation holds exactly its accepted sends and their replies, in order.
    for w in writers:
        for conversation_id, accepted in w.conversations.items():
            got = [(m["id"], m["role"], m["content"], m["status"])
                   for m in history(client, w.user["access_token"], conversation_id)]
            want = []
            for s in accepted:
                want += [(s["message_id"], "user", s["message"], "complete"),
                         (s["reply_message_id"], "assistant", FULL_REPLY, "complete")]
            assert got == want, f"conversation {conversation_id}: {len(got)} messages, expected {len(want)}"
        owned = database.scalar("SELECT count(*) FROM conversations WHERE user_id = :u", u=w.user["id"])
        assert owned == len(w.conversations)
        if w.last_bio is not None:
            profile = client.get("/api/user/profile", token=w.user["access_token"])
            assert profile.body["bio"] == w.last_bio
    assert database.scalar("SELECT count(*) FROM messages") == 2 * len(sends)

    locked = grep_logs(stack, r"database is locked|database table is locked", since=marks)
    assert not locked, {k: v[:3] for k, v in locked.items()}
    dry = grep_logs(stack, POOL_TROUBLE, since=marks)
    assert not dry, {k: v[:3] for k, v in dry.items()}
    errors = grep_logs(stack, r"\bERROR\b|Traceback", since=marks)
    print(f"ERROR/Traceback lines in the logs: { {k: len(v) for k, v in errors.items()} }")


def test_a_burst_of_replies_on_the_llm_workers_gevent_pool(layout):
    """200 messages at once: the llm worker's gevent pool runs them side by side (its default
    concurrency is 200), each streaming tokens to Redis and acknowledging its message at the end.
    Every one succeeds, and no Redis connection pool runs dry on the way."""
    stack, database = layout
    users = [database.user() for _ in range(THREADS)]
    client = Client(stack.url, timeout=30)
    marks = log_marks(stack)

    def burst(user):
        for n in range(200 // THREADS):
            client.post("/api/chat/send", token=user["access_token"], json={"message": f"burst {n}"})
    threads = [threading.Thread(target=burst, args=(u,), daemon=True) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    accepted = [a.body["job_id"] for a in client.answers if a.status == 202]
    assert len(accepted) == 200, {a.status for a in client.answers}
    states = wait_jobs_settled(database, accepted, timeout=90)
    not_ok = {j: s for j, s in states.items() if s != "succeeded"}
    dry = grep_logs(stack, POOL_TROUBLE, since=marks)
    print(f"\nburst of 200: not succeeded {len(not_ok)}; pool-exhaustion log lines: "
          f"{ {k: len(v) for k, v in dry.items()} }")
    assert not not_ok, explain_unsettled(stack, database, not_ok)
    assert not dry, {k: v[:3] for k, v in dry.items()}


STREAMS = 250


def test_hundreds_of_event_streams_stay_open(layout):
    """250 clients follow jobs that have not ended (2 gevent web workers, so one of them holds
    at least 125): each stream keeps getting keep-alives while it waits, then ends with the
    job's terminal event when the job is cancelled. The open streams of a web process share its
    one reader (api/services/sse.py StreamHub)."""
    stack, database = layout
    user = database.user()
    from sqlalchemy import update

    from shared import jobs
    from shared.database import db, write_tx
    from shared.models import Job
    with database.app.app_context():
        with write_tx():  # queued and marked dispatched, never sent: no worker takes them (see the layout's env)
            # Made without an owner (this process's per-user limit of active jobs is 20), then given one.
            payload = MailPayload(to="nobody@example.com", template="no_account")
            made = [jobs.new_job("mail", None, payload) for _ in range(STREAMS)]
            job_ids = [job.id for job in made]
            db.session.execute(update(Job).where(Job.id.in_(job_ids)).values(user_id=user["id"]))
        db.session.remove()
    received: dict[str, list[str]] = {j: [] for j in job_ids}
    ended: dict[str, float] = {}
    stop = threading.Event()

    def follow(job_id):
        try:
            with requests.get(f"{stack.url}/api/jobs/{job_id}/events", headers=bearer(user["access_token"]),
                              stream=True, timeout=30) as resp:
                for chunk in resp.iter_content(chunk_size=None, decode_unicode=True):
                    received[job_id].append(chunk)
                    if stop.is_set() and "event:" in chunk:
                        pass
        except requests.RequestException as exc:
            received[job_id].append(f"!{exc!r}")
        ended[job_id] = time.monotonic()

    threads = [threading.Thread(target=follow, args=(j,), daemon=True) for j in job_ids]
    opened = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(7)  # at least two keep-alive periods for every stream
    early = {j: "".join(received[j])[-200:] for j in job_ids if j in ended}
    quiet = [j for j in job_ids if "".join(received[j]).count(": keep-alive") < 2]
    for job_id in job_ids:  # end every job: each stream must deliver the terminal event and close
        r = requests.delete(f"{stack.url}/api/jobs/{job_id}", headers=bearer(user["access_token"]), timeout=10)
        assert r.status_code == 200, r.text
    for t in threads:
        t.join(30)
    stop.set()
    last = {j: [e["event"] for e in parse_sse("".join(received[j]))][-1:] for j in job_ids}
    print(f"\n{STREAMS} streams: ended early {len(early)}, with fewer than 2 keep-alives in 7 s {len(quiet)}, "
          f"ended with 'cancelled' {sum(1 for v in last.values() if v == ['cancelled'])}; "
          f"all closed {max(ended.values(), default=opened) - opened:.1f} s after opening")
    assert not early, f"{len(early)} stream(s) ended before their job did: {list(early.items())[:3]}"
    assert not quiet, f"{len(quiet)} stream(s) got fewer than 2 keep-alives"
    assert all(v == ["cancelled"] for v in last.values()), [v for v in last.values() if v != ["cancelled"]][:5]
