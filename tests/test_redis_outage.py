"""A Redis outage under light load: 10 s down, then back with its append-only file.

The stack has a redis-server of its own (appendonly), so that stopping it leaves the
session's Redis alone, and a database of its own, so that no other sweeper helps. While a
light load of chat messages runs, Redis is terminated for 10 s and a new redis-server is
started on the same port and folder (the AOF reloads). Then:
- while it is down, protected routes answer 503 in the error shape within 1 s, each request
  timed (none hangs); liveness still answers 200 and readiness 503 naming Redis;
- every chat that got a 202, before or after the outage, ends `succeeded` with its whole reply;
- the worker and beat reconnect by themselves: a message sent after recovery is answered,
  and a job whose record was written while nothing could send it is sent by the sweeper.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from devtools.stack import start_redis
from shared.payloads import MailPayload
from tests.fire import SWEEPER_ENV, UNTHROTTLED_ENV, Client, IsolatedDatabase, grep_logs, wait_jobs_settled
from tests.support import new_email

pytestmark = pytest.mark.slow

ECHO_TOKENS = 20
FULL_REPLY = "".join(f"tok{i} " for i in range(ECHO_TOKENS))
OUTAGE_SECONDS = 10.0
PROBES = [("GET", "/api/user/profile", None), ("GET", "/api/jobs", None), ("GET", "/api/chat/conversations", None),
          ("GET", "/api/files", None), ("POST", "/api/chat/send", {"message": "are you there?"}),
          ("PUT", "/api/user/profile", {"bio": "during the outage"})]


@pytest.fixture(scope="module")
def outage(make_stack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("outage")
    database = IsolatedDatabase(folder / "db")
    redis_proc, redis_url = start_redis(folder / "redis", appendonly=True)
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    stack = make_stack("outage", redis_url=redis_url, DATABASE_URL=database.url, LLM_PROVIDER="echo",
                       LLM_ECHO_RATE="20", LLM_ECHO_TOKENS=str(ECHO_TOKENS), **SWEEPER_ENV, **UNTHROTTLED_ENV)
    stack.start_worker()
    stack.start_beat()
    stack.start_web()
    state = {"redis": redis_proc, "folder": folder / "redis", "port": port}
    yield stack, database, state
    stack.close()
    state["redis"].terminate()
    state["redis"].wait(10)
    database.close()


class ChatLoad:
    """One chat message every `interval` seconds from a background thread, bounded in count and time."""

    def __init__(self, client: Client, user: dict, interval: float, max_seconds: float, max_requests: int):
        self.client, self.user, self.interval = client, user, interval
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.accepted: list[dict] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline and n < self.max_requests:
            message = f"light load {n} {uuid.uuid4().hex[:6]}"
            a = self.client.post("/api/chat/send", token=self.user["access_token"], json={"message": message})
            if a.status == 202:
                self.accepted.append({**a.body, "message": message, "at": a.started})
            n += 1
            self.stop.wait(self.interval)


def test_redis_outage_fails_fast_and_loses_nothing(outage, smtp):
    stack, database, state = outage
    user = database.user()
    client = Client(stack.url, token=user["access_token"], timeout=10)
    probe = Client(stack.url, token=user["access_token"], timeout=5)
    load = ChatLoad(client, user, interval=0.5, max_seconds=60, max_requests=120)
    load.thread.start()
    try:
        time.sleep(4)  # some replies are streaming when Redis goes
        in_flight = [r[0] for r in database.rows("SELECT id FROM jobs WHERE state = 'running'")]
        down_at = time.time()
        state["redis"].terminate()
        state["redis"].wait(10)
        during = []
        while time.time() - down_at < OUTAGE_SECONDS:
            for method, path, body in PROBES:
                during.append(probe.call(method, path, json=body))
            time.sleep(0.2)
        health = probe.get("/api/health")
        ready = probe.get("/api/health/ready")
        state["redis"], _ = start_redis(state["folder"], port=state["port"], appendonly=True)
        up_at = time.time()
        time.sleep(10)  # the load goes on after recovery
    finally:
        load.stop.set()
        load.thread.join(30)

    # While it was down: 503 in the error shape, within a second, for every protected route.
    slow = [(a.method, a.path, a.status, round(a.seconds, 3)) for a in during if a.seconds >= 1.0]
    wrong = [(a.method, a.path, a.status, a.body) for a in during if a.status != 503
             or not isinstance(a.body, dict) or a.body.get("error", {}).get("code") != "service_unavailable"]
    latencies = sorted(a.seconds for a in during)
    print(f"\nduring the outage: {len(during)} probes, 503 latency p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")
    assert not slow, f"requests that took a second or more while Redis was down: {slow[:10]}"
    assert not wrong, f"answers other than 503 service_unavailable while Redis was down: {wrong[:10]}"
    assert health.status == 200
    assert ready.status == 503 and "redis" in ready.body["error"]["message"], ready.body

    # The load's own requests: a 202 or a quick 503, never a hang or a 500.
    others = [(a.path, a.status, round(a.seconds, 2)) for a in client.answers if a.status not in (202, 503)
              or a.seconds >= 1.0]
    assert not others, others
    before = [c for c in load.accepted if c["at"] < down_at]
    after = [c for c in load.accepted if c["at"] >= up_at]
    assert before and after, (len(before), len(after))

    # Every 202 completes, with the whole reply stored once.
    ids = [c["job_id"] for c in load.accepted]
    states = wait_jobs_settled(database, ids, timeout=60)
    failed = {j: s for j, s in states.items() if s != "succeeded"}
    errors = {j: database.scalar("SELECT error FROM jobs WHERE id = :i", i=j) for j in list(failed)[:5]}
    first_back = min((c["at"] for c in after), default=None)
    print(f"accepted before the outage: {len(before)}, after: {len(after)}; first 202 after recovery "
          f"{first_back - up_at:.2f} s after Redis was back; not succeeded: {len(failed)} {errors}")
    assert not failed, f"{len(failed)} accepted chat job(s) did not succeed: {errors}"
    attempts = {j: database.scalar("SELECT attempts FROM jobs WHERE id = :i", i=j) for j in in_flight}
    print(f"replies streaming when Redis went: {len(in_flight)}, their attempts: {sorted(attempts.values())}")
    for c in load.accepted:
        h = client.get(f"/api/chat/history?conversation_id={c['conversation_id']}")
        shape = [(m["role"], m["status"], m["content"]) for m in h.body["items"]]
        assert shape == [("user", "complete", c["message"]), ("assistant", "complete", FULL_REPLY)], shape

    # Beat reconnected too: a job written while nothing could send it is sent by the sweeper.
    from sqlalchemy import update

    from shared import jobs
    from shared.database import db, write_tx
    from shared.models import Job
    to = new_email()
    with database.app.app_context():
        with write_tx():
            job = jobs.new_job("mail", user["id"], MailPayload(to=to, template="no_account",
                                                               context={"purpose": "register", "minutes": 5}))
            # as dispatch() leaves it when Redis refuses the message
            db.session.execute(update(Job).where(Job.id == job.id).values(dispatched_at=None))
        job_id = job.id
        db.session.remove()
    swept_at = time.monotonic()
    assert wait_jobs_settled(database, [job_id], timeout=30)[job_id] == "succeeded"
    assert smtp.wait_for(to)[0]["Message-ID"] == f"<job-{job_id}@tests.local>"
    print(f"a never-sent job was swept and done {time.monotonic() - swept_at:.1f} s after it was written")

    locked = grep_logs(stack, r"database is locked")
    assert not locked, locked
