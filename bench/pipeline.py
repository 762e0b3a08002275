"""Pipeline figures beside their bare and essential baselines, measured in one run on the same machine.

Production settings (bench.harness.PRODUCTION: rate limits and the active-jobs check on, their
values raised above the load), many users, only 2xx answers counted.

1. enqueue: POST /api/chat/send (echo provider, an Idempotency-Key per request) with wrk, over
   USERS users, beside the essential enqueue (bench/essential_app.py) and a bare Flask
   endpoint; median of RUNS alternated runs each.
2. polling: GET /api/jobs/<id> over POLL_JOBS distinct jobs of those users, beside the
   essential poll and the bare endpoint; median of RUNS alternated runs each.
3. round trip: POST, then the terminal event on the SSE stream, one job at a time (http.client),
   beside raw Celery `delay().get()` of a no-op task on the same Redis.
4. worker throughput: no-op jobs through our task wrapper (claim, lease, events, finish) beside
   raw Celery no-op tasks; both on 2 solo worker processes (bench/workers.py).
5. memory: peak RSS of the API and worker processes (VmHWM) after the loads.
"""
from __future__ import annotations

import http.client
import json
import random
import time

from bench.harness import Environment, Figure, Results, summary_ms
from bench.load import compare, describe
from bench.workers import WORKERS, our_throughput, peak_rss_mb, raw_roundtrip, raw_throughput

SECTION = "pipeline"
WEB_WORKERS = 2
USERS, POLL_JOBS, RUNS = 200, 1000, 3
BARE, ESSENTIAL = "bare Flask endpoint", "essential app"


def run(env: Environment, results: Results, quick: bool = False) -> None:
    """The section's figures (module docstring)."""
    seconds, runs = (3, 1) if quick else (10, RUNS)
    tmp = env.tmp
    bare = env.stack("bare")
    bare.start_web(workers=WEB_WORKERS, app="bench.bare_app:create_app()", health="/bare")
    essential = env.stack("essential")
    essential.start_web(workers=WEB_WORKERS, app="bench.essential_app:create_app()", health="/essential/health")
    users = env.users(20 if quick else USERS)
    # Enqueue and polling with no worker on the llm queue: the jobs wait; between runs the queues
    # are emptied and the waiting jobs marked done, so each run starts with no active jobs.
    stack = env.stack("pipeline", LLM_PROVIDER="echo", LLM_ECHO_TOKENS="1", LLM_ECHO_RATE="1000")
    stack.start_web(workers=WEB_WORKERS)
    setup = f"wrk -t2 -c64, {seconds} s per run, median of {runs}; gunicorn gevent x{WEB_WORKERS} for each"

    # 1. Enqueue.
    body = '{"message": "What is a derivative?"}'
    posts = [f"POST\t/api/chat/send\t{token}" for _, token in users]
    m = compare({"ours": (stack.url, posts), "essential": (essential.url, posts),
                 "bare": (bare.url, ["POST\t/bare\t"])}, body, seconds, runs, tmp, idempotent_posts=True,
                between=lambda: _drain(env, stack.redis_url))
    _figure(results, "enqueue POST /api/chat/send", m, 0.7,
            f"{len(users)} users, an Idempotency-Key per request; {setup}")

    # 2. Polling distinct jobs of many users.
    lines = [f"GET\t/api/jobs/{job_id}\t{token}" for token, job_id in _poll_jobs(env, users, POLL_JOBS)]
    m = compare({"ours": (stack.url, lines), "essential": (essential.url, lines),
                 "bare": (bare.url, ["GET\t/bare\t"])}, "", seconds, runs, tmp)
    _figure(results, "polling GET /api/jobs/<id>", m, 0.8, f"{len(lines)} distinct jobs of {len(users)} users; {setup}")
    _drain(env, stack.redis_url)

    # 3. Round trip, one job at a time, with a worker on the llm queue.
    stack.start_worker(role="llm", queues="llm", pool="solo", concurrency=1)
    _, token = users[0]
    samples = _round_trips(stack.url, token, 30 if quick else 200)
    ours = summary_ms(samples[5:])
    raw = raw_roundtrip(env, 30 if quick else 200)
    results.add(Figure(SECTION, "job round trip p50 (POST to terminal SSE event)", ours["p50"], "ms",
                       baseline=raw["p50"], baseline_name="raw Celery delay().get() p50",
                       target="<= 3 x raw Celery", met=ours["p50"] <= 3 * raw["p50"],
                       note=f"p99 {ours['p99']:.1f} ms (raw p99 {raw['p99']:.1f} ms); echo provider, 1 token; "
                            "our llm worker and raw Celery's each one solo process"))

    # 5. Memory so far.
    pids = stack.pids()
    results.add(Figure(SECTION, "peak RSS, API process", peak_rss_mb(pids.get("web", [])), "MB",
                       baseline=peak_rss_mb(bare.pids().get("web", [])), baseline_name="bare Flask, same load",
                       essential=peak_rss_mb(essential.pids().get("web", [])),
                       essential_name="essential app, same load",
                       note=f"gunicorn master and {WEB_WORKERS} gevent workers; the largest"))
    results.add(Figure(SECTION, "peak RSS, llm worker process", peak_rss_mb(pids.get("llm", [])), "MB",
                       baseline=raw["rss"], baseline_name="raw Celery solo worker",
                       note="after the round trips; solo pool for both"))
    for s in (stack, essential, bare):
        s.close()

    # 4. Worker throughput.
    n = 500 if quick else 3000
    ours_rate = our_throughput(env, n)
    raw_rate = raw_throughput(env, n)
    results.add(Figure(SECTION, "worker throughput, no-op jobs", ours_rate, "jobs/s", baseline=raw_rate,
                       baseline_name="raw Celery no-op tasks", target=">= 0.8 x raw Celery",
                       met=ours_rate >= 0.8 * raw_rate,
                       note=f"{n} jobs through the full claim, lease and finish; {WORKERS} worker processes with the "
                            "solo pool, for both"))


def _figure(results: Results, name: str, m: dict, share: float, setup: str) -> None:
    ours, ess, base = m["ours"], m["essential"], m["bare"]
    # Every answer of these loads should be a 2xx: one that is not (ours or a baseline's) makes
    # the comparison meaningless, so the figure is not met whatever its ratio.
    clean = all(t["non2xx_all"] == 0 and t["errors_all"] == 0 for t in (ours, ess, base))
    results.add(Figure(SECTION, name, ours["rps"], "req/s", baseline=base["rps"], baseline_name=BARE,
                       essential=ess["rps"], essential_name=ESSENTIAL, versus="essential",
                       target=f">= {share} x essential", met=clean and ours["rps"] >= share * ess["rps"],
                       note="; ".join([*([] if clean else ["NOT COMPARABLE: non-2xx answers or socket errors"]),
                                       describe("ours", ours), describe("essential", ess), describe("bare", base),
                                       "2xx answers only", setup])))


def _round_trips(url: str, token: str, n: int) -> list[float]:
    """`n` times: POST a chat message, then read its events until the terminal one (seconds each).

    Over two kept-alive http.client connections: requests costs ~1.5 ms of client CPU a request
    (the bare endpoint: 2.5 ms through it, 0.9 ms through http.client), which is not the server's.
    """
    host, port = url.removeprefix("http://").split(":")
    post, get = http.client.HTTPConnection(host, int(port)), http.client.HTTPConnection(host, int(port))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    samples = []
    try:
        for i in range(n):
            t = time.perf_counter()
            post.request("POST", "/api/chat/send", body=json.dumps({"message": f"q{i}"}), headers=headers)
            sent = json.loads(post.getresponse().read())
            get.request("GET", sent["events_url"])
            resp = get.getresponse()
            while (line := resp.readline()) and not line.startswith((b"event: done", b"event: error")):
                pass
            samples.append(time.perf_counter() - t)
            resp.read()  # the stream's end
    finally:
        post.close()
        get.close()
    return samples


def _drain(env: Environment, redis_url: str) -> None:
    """Empty the queues, and mark the jobs still waiting as done (no run counts another's active jobs)."""
    import redis
    from sqlalchemy import update

    from shared.database import db, utcnow, write_tx
    from shared.models import Job
    redis.Redis.from_url(redis_url).delete("llm", "default", "files", "mail", "tts")
    with env.app.app_context():
        with write_tx():
            db.session.execute(update(Job).where(Job.state == "queued").values(state="succeeded", progress=1.0,
                                                                                finished_at=utcnow()))
        db.session.remove()


def _poll_jobs(env: Environment, users: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """(token, job id) for `n` distinct chat jobs the users sent (those made by the enqueue runs), shuffled."""
    from sqlalchemy import select

    from shared.database import db
    from shared.models import Job
    tokens = dict(users)
    with env.app.app_context():
        rows = db.session.execute(select(Job.id, Job.user_id).where(Job.kind == "chat", Job.user_id.in_(tokens))
                                  .order_by(Job.id).limit(n)).all()
        db.session.remove()
    pairs = [(tokens[user_id], job_id) for job_id, user_id in rows]
    random.Random(7).shuffle(pairs)
    return pairs
