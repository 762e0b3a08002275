"""Soak: a moderate, mixed load for a while; nothing fails, nothing grows.

The default process layout (gunicorn with 2 gevent workers, a prefork worker on
files,tts, a gevent worker on mail,default, the llm worker with a gevent pool, beat) on a database of its own
takes chat messages, profile reads and writes, history and job reads, finished-job event
streams and code mails. Short form ~60 s; MENTOR_LONG_TESTS=1 runs 10 minutes. Then:
- no error: every answer is 2xx, every job succeeded, every mail arrived once (by Message-ID);
- memory: each web and worker process's VmRSS grows by less than 10% from the end of the
  warm-up to the end of the run;
- Redis keys are bounded: every key has a TTL or is a structure that is consumed (Celery's
  queues, kombu's bindings and unacked bookkeeping, the `knowledge:*` counters, the
  `workers:alive:*` sets); anything else is printed and fails the test.
"""
from __future__ import annotations

import re
import threading
import time

import pytest

from tests.fire import (
    LONG,
    SWEEPER_ENV,
    UNTHROTTLED_ENV,
    Client,
    IsolatedDatabase,
    children,
    explain_unsettled,
    rss_kb,
    start_default_layout,
    wait_jobs_settled,
)
from tests.support import new_email

pytestmark = pytest.mark.slow

SECONDS = 600.0 if LONG else 60.0
WARM_UP = 60.0 if LONG else 20.0
THREADS = 4
PER_THREAD_INTERVAL = 0.2  # seconds between a thread's requests: ~20 requests/s in all
RSS_GROWTH_LIMIT = 0.10
ECHO_TOKENS = 20
FULL_REPLY = "".join(f"tok{i} " for i in range(ECHO_TOKENS))

# Keys without a TTL that are consumed structures, not leaks.
CONSUMED = [
    re.compile(r"^(default|mail|files|llm|tts)(\x06\x16\d+)?$"),  # Celery queues (and priority lists)
    re.compile(r"^_kombu\.binding.+$"),  # kombu's exchange bindings (and its delayed-delivery bookkeeping)
    re.compile(r"^unacked(_index|_mutex)?$"),  # kombu's bookkeeping of delivered messages
    re.compile(r"^knowledge:(added|deleted)$"),
    re.compile(r"^workers:alive:.+$"),
]


@pytest.fixture(scope="module")
def soak_stack(make_stack, tmp_path_factory):
    database = IsolatedDatabase(tmp_path_factory.mktemp("soak-db"))
    stack = make_stack("soak", DATABASE_URL=database.url, LLM_PROVIDER="echo", LLM_ECHO_RATE="50",
                       LLM_ECHO_TOKENS=str(ECHO_TOKENS), **SWEEPER_ENV, **UNTHROTTLED_ENV)
    start_default_layout(stack)
    yield stack, database
    stack.close()
    database.close()


def processes(stack) -> dict[str, int]:
    """name -> pid of every web and worker process (gunicorn's workers, Celery's main and pool processes)."""
    out = {}
    for n, pid in enumerate(sorted(children(stack.procs["web"].pid))):
        out[f"web[{n}]"] = pid
    for role in ("worker", "llm"):
        main = stack.procs[role].pid
        out[role] = main
        for n, pid in enumerate(sorted(children(main))):
            out[f"{role}-child[{n}]"] = pid
    out["beat"] = stack.procs["beat"].pid
    return out


class Visitor(threading.Thread):
    """One user going round the API at a steady pace until the deadline (bounded in requests too)."""

    def __init__(self, client: Client, user: dict, deadline: float, index: int):
        super().__init__(daemon=True)
        self.client, self.user, self.deadline, self.index = client, user, deadline, index
        self.chats: list[dict] = []
        self.mails: list[dict] = []
        self.conversation: str | None = None

    def run(self):
        token = self.user["access_token"]
        for n in range(100_000):
            if time.monotonic() > self.deadline:
                return
            tick = time.monotonic()
            step = n % 10
            if step in (0, 4, 7):
                body = {"message": f"soak {self.index}.{n}"}
                if self.conversation and n % 30:
                    body["conversation_id"] = self.conversation
                a = self.client.post("/api/chat/send", token=token, json=body)
                if a.status == 202:
                    self.conversation = a.body["conversation_id"]
                    self.chats.append(a.body)
            elif step == 1:
                self.client.get("/api/user/profile", token=token)
            elif step == 2:
                self.client.put("/api/user/profile", token=token, json={"bio": f"soak bio {n}"})
            elif step == 3 and self.conversation:
                self.client.get(f"/api/chat/history?conversation_id={self.conversation}&limit=20", token=token)
            elif step == 5 and self.chats:
                self.client.get(f"/api/jobs/{self.chats[-1]['job_id']}", token=token)
            elif step == 6:
                self.client.get("/api/jobs?limit=5", token=token)
            elif step == 8 and len(self.chats) > 1:
                self.client.events(self.chats[-2]["events_url"])  # most likely finished: replayed at once
            elif step == 9 and n % 20 == 9:
                to = new_email()
                a = self.client.post("/api/auth/send-code", json={"email": to, "purpose": "register"})
                if a.status == 202:
                    self.mails.append({**a.body, "to": to})
            time.sleep(max(0.0, PER_THREAD_INTERVAL - (time.monotonic() - tick)))


def sample_rss(procs: dict[str, int]) -> dict[str, int | None]:
    return {name: rss_kb(pid) for name, pid in procs.items()}


def redis_keys(stack) -> tuple[int, list[str], dict[str, int]]:
    """(number of keys, keys without a TTL that are not consumed structures, count of keys by kind)."""
    import redis
    r = redis.Redis.from_url(stack.redis_url)
    try:
        total, unknown, kinds = 0, [], {}
        for key in r.scan_iter(count=1000):
            total += 1
            name = key.decode(errors="replace")
            kind = re.sub(r"[0-9a-f]{32}", "<id>", name.split(":")[0] + ":" + ":".join(name.split(":")[1:2]))
            kinds[kind] = kinds.get(kind, 0) + 1
            if r.ttl(key) == -1 and not any(p.match(name) for p in CONSUMED):
                unknown.append(name)
        return total, unknown, kinds
    finally:
        r.close()


def test_soak_no_errors_no_growth(soak_stack, smtp):
    stack, database = soak_stack
    users = [database.user() for _ in range(THREADS)]
    client = Client(stack.url, timeout=15)
    procs = processes(stack)
    started = time.monotonic()
    deadline = started + SECONDS
    visitors = [Visitor(client, u, deadline, i) for i, u in enumerate(users)]
    for v in visitors:
        v.start()
    samples: list[tuple[float, dict]] = []
    while time.monotonic() < deadline:
        samples.append((time.monotonic() - started, sample_rss(procs)))
        time.sleep(5)
    for v in visitors:
        v.join(60)
    samples.append((time.monotonic() - started, sample_rss(procs)))
    assert not any(v.is_alive() for v in visitors), "a visitor thread hung"

    # No errors.
    answers = list(client.answers)
    statuses: dict[int, int] = {}
    for a in answers:
        statuses[a.status] = statuses.get(a.status, 0) + 1
    chats = [c for v in visitors for c in v.chats]
    mails = [m for v in visitors for m in v.mails]
    print(f"\n{len(answers)} requests in {SECONDS:.0f} s ({len(answers) / SECONDS:.1f}/s): {statuses}; "
          f"{len(chats)} chats, {len(mails)} mails")
    assert all(200 <= s < 300 for s in statuses), [(a.method, a.path, a.status, a.body) for a in answers
                                                   if not 200 <= a.status < 300][:10]
    ids = [c["job_id"] for c in chats] + [m["job_id"] for m in mails]
    states = wait_jobs_settled(database, ids, timeout=60)
    not_ok = {j: s for j, s in states.items() if s != "succeeded"}
    assert not not_ok, explain_unsettled(stack, database, not_ok)
    for m in mails:
        assert {x["Message-ID"] for x in smtp.wait_for(m["to"])} == {f"<job-{m['job_id']}@tests.local>"}

    # Memory: from the end of the warm-up to the end of the run.
    assert processes(stack) == procs, "a web or worker process was replaced during the soak"
    warm = [s for t, s in samples if t >= WARM_UP]
    base = {name: max(s[name] for s in warm[:2]) for name in procs}  # the first samples after warm-up
    end = {name: max(s[name] for s in warm[-2:]) for name in procs}   # the last samples
    growth = {name: (end[name] - base[name]) / base[name] for name in procs}
    first = samples[0][1]
    print("RSS kB (start -> after warm-up -> end, growth after warm-up):")
    for name in procs:
        print(f"  {name:16} {first[name]:>8} -> {base[name]:>8} -> {end[name]:>8}  {growth[name] * 100:+.1f}%")
    grew = {name: f"{g * 100:.1f}%" for name, g in growth.items() if g >= RSS_GROWTH_LIMIT}
    assert not grew, f"RSS grew by 10% or more after warm-up: {grew}"

    # Redis keys: bounded.
    total, unknown, kinds = redis_keys(stack)
    print(f"redis keys: {total}; by kind: {dict(sorted(kinds.items(), key=lambda kv: -kv[1]))}")
    if unknown:
        print(f"keys without a TTL that are not consumed structures: {unknown[:50]}")
    assert not unknown, unknown[:50]
