"""Pipeline figures against their baselines, measured in one run on the same machine.

1. enqueue: POST /api/chat/send (echo provider) with wrk, beside a bare Flask endpoint.
2. round trip: POST, then the terminal event on the SSE stream, one job at a time, beside raw
   Celery `delay().get()` of a no-op task on the same Redis.
3. worker throughput: no-op jobs through our task wrapper (claim, lease, events, finish) beside
   raw Celery no-op tasks; both on 2 solo worker processes (short jobs scale by processes).
5. polling: GET /api/jobs/<id> with wrk, beside the bare endpoint.
7. memory: peak RSS of the API and worker processes (VmHWM) after the loads.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import requests

from bench.harness import Environment, Figure, Results, summary_ms

SECTION = "pipeline"
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "requests.lua"
WEB_WORKERS = 2


def wrk(url: str, lines: list[str], body: str, seconds: int, connections: int, tmp: Path) -> dict:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: make bench installs it (apt-get install wrk)")
    path = tmp / f"wrk-{time.monotonic_ns()}.txt"
    path.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "WRK_REQUESTS": str(path), "WRK_BODY": body}
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(WRK_SCRIPT), url], env=env, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"RESULT rps=([\d.]+) p50=([\d.]+) p99=([\d.]+) errors=(\d+) non2xx=(\d+) total=(\d+)", out.stdout)
    if not m:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    rps, p50, p99, errors, non2xx, total = m.groups()
    return {"rps": float(rps), "p50": float(p50), "p99": float(p99), "errors": int(errors),
            "non2xx": int(non2xx), "total": int(total)}


def peak_rss_mb(pids: list[int]) -> float:
    """The largest VmHWM among these processes, in MB."""
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


def run(env: Environment, results: Results, quick: bool = False) -> None:
    seconds = 5 if quick else 15
    tmp = env.tmp
    bare = env.stack("bare")
    bare.start_web(workers=WEB_WORKERS, app="bench.bare_app:create_app()", health="/bare")
    users = [env.user() for _ in range(50)]

    # 1. Enqueue: many users, echo jobs that nobody runs yet (no worker on the llm queue).
    stack = env.stack("pipeline", LLM_PROVIDER="echo", LLM_ECHO_TOKENS="1", LLM_ECHO_RATE="1000")
    stack.start_web(workers=WEB_WORKERS)
    body = '{"message": "What is a derivative?"}'
    base = wrk(bare.url, ["POST\t/bare\t"], body, seconds, 64, tmp)
    ours = wrk(stack.url, [f"POST\t/api/chat/send\t{token}" for _, token in users], body, seconds, 64, tmp)
    results.add(Figure(SECTION, "enqueue POST /api/chat/send", ours["rps"], "req/s", baseline=base["rps"],
                       baseline_name="bare Flask endpoint", target=">= 0.5 x baseline (stretch 1,500 req/s)",
                       met=ours["rps"] >= 0.5 * base["rps"],
                       note=f"p50 {ours['p50']:.1f} ms, p99 {ours['p99']:.1f} ms (bare p50 {base['p50']:.1f}, "
                            f"p99 {base['p99']:.1f}); errors {ours['errors']}, non-2xx {ours['non2xx']}; "
                            f"wrk -t2 -c64, gunicorn gevent x{WEB_WORKERS}"))
    _purge_queues(stack.redis_url)

    # 5. Polling one's jobs.
    job_ids = _some_jobs(stack.url, users)
    lines = [f"GET\t/api/jobs/{job_id}\t{token}" for token, job_id in job_ids]
    base = wrk(bare.url, ["GET\t/bare\t"], "", seconds, 64, tmp)
    ours = wrk(stack.url, lines, "", seconds, 64, tmp)
    results.add(Figure(SECTION, "polling GET /api/jobs/<id>", ours["rps"], "req/s", baseline=base["rps"],
                       baseline_name="bare Flask endpoint", target=">= 0.7 x baseline",
                       met=ours["rps"] >= 0.7 * base["rps"],
                       note=f"p50 {ours['p50']:.1f} ms, p99 {ours['p99']:.1f} ms; non-2xx {ours['non2xx']}"))
    _purge_queues(stack.redis_url)

    # 2. Round trip, one job at a time, with a worker on the llm queue.
    stack.start_worker(role="llm", queues="llm", pool="solo", concurrency=1)
    _, token = users[0]
    h = {"Authorization": f"Bearer {token}"}
    session = requests.Session()
    samples = []
    for i in range(30 if quick else 200):
        t = time.perf_counter()
        sent = session.post(f"{stack.url}/api/chat/send", headers=h, json={"message": f"q{i}"}).json()
        with session.get(stack.url + sent["events_url"], stream=True, timeout=30) as resp:
            for line in resp.iter_lines():
                if line.startswith(b"event: done") or line.startswith(b"event: error"):
                    break
        samples.append(time.perf_counter() - t)
    ours = summary_ms(samples[5:])
    raw = _raw_roundtrip(env, 30 if quick else 200)
    results.add(Figure(SECTION, "job round trip p50 (POST to terminal SSE event)", ours["p50"], "ms",
                       baseline=raw["p50"], baseline_name="raw Celery delay().get() p50",
                       target="<= 2 x baseline", met=ours["p50"] <= 2 * raw["p50"],
                       note=f"p99 {ours['p99']:.1f} ms (raw p99 {raw['p99']:.1f} ms); echo provider, 1 token"))

    # 7. Memory so far.
    pids = stack.pids()
    results.add(Figure(SECTION, "peak RSS, API process", peak_rss_mb(pids.get("web", [])), "MB",
                       baseline=peak_rss_mb(bare.pids().get("web", [])), baseline_name="bare Flask, same load",
                       note=f"gunicorn master and {WEB_WORKERS} gevent workers; the largest"))
    results.add(Figure(SECTION, "peak RSS, llm worker process", peak_rss_mb(pids.get("llm", [])), "MB",
                       baseline=raw["rss"], baseline_name="raw Celery solo worker",
                       note="after the round trips; solo pool for both"))
    stack.close()
    bare.close()

    # 3. Worker throughput.
    n = 500 if quick else 3000
    ours_rate = _our_throughput(env, n)
    raw_rate = _raw_throughput(env, n)
    results.add(Figure(SECTION, "worker throughput, no-op jobs", ours_rate, "jobs/s", baseline=raw_rate,
                       baseline_name="raw Celery no-op tasks", target=">= 0.8 x baseline",
                       met=ours_rate >= 0.8 * raw_rate,
                       note=f"{n} jobs; 2 worker processes with the solo pool, for both"))


def _purge_queues(redis_url: str) -> None:
    import redis
    redis.Redis.from_url(redis_url).delete("llm", "default", "files", "mail", "tts")


def _some_jobs(url: str, users) -> list[tuple[str, str]]:
    out = []
    for _, token in users[:20]:
        sent = requests.post(f"{url}/api/chat/send", headers={"Authorization": f"Bearer {token}"},
                             json={"message": "poll me"}).json()
        out.append((token, sent["job_id"]))
    return out


def _raw_roundtrip(env: Environment, n: int) -> dict:
    raw = env.stack("raw-roundtrip")
    raw.start_worker(role="raw", queues="raw", pool="solo", concurrency=1, app="bench.raw_celery", wait=False)
    os.environ["REDIS_URL"] = raw.redis_url
    try:
        from bench import raw_celery
        raw_celery.app.conf.broker_url = raw_celery.app.conf.result_backend = raw.redis_url
        raw_celery.noop.delay().get(timeout=60)  # worker up
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            raw_celery.noop.delay().get(timeout=30)
            samples.append(time.perf_counter() - t)
        rss = peak_rss_mb(raw.pids().get("raw", []))
    finally:
        os.environ["REDIS_URL"] = env.redis_url
        raw.close()
    return {**summary_ms(samples[5:]), "rss": rss}


def _our_throughput(env: Environment, n: int) -> float:
    from sqlalchemy import func, insert, select

    from shared.celery_config import make_celery
    from shared.database import db, utcnow, write_tx
    from shared.models import Job
    stack = env.stack("throughput")
    owner, _ = env.user()
    first = int(time.time() * 1000) << 20
    ids = [f"{i:032x}" for i in range(first, first + n)]
    with env.app.app_context():
        with write_tx():
            db.session.execute(insert(Job), [{"id": i, "user_id": owner, "kind": "noop", "state": "queued",
                                              "progress": 0.0, "payload": {}, "attempts": 0,
                                              "dispatched_at": utcnow(), "created_at": utcnow(),
                                              "updated_at": utcnow()} for i in ids])
    for k in range(2):  # up and idle before the clock starts
        stack.start_worker(role=f"w{k}", queues="default", pool="solo", concurrency=1)
    client = make_celery("bench-sender")
    client.conf.broker_url = stack.redis_url
    started = time.perf_counter()
    with client.connection_for_write() as conn:
        producer = client.amqp.Producer(conn)
        for job_id in ids:
            client.send_task("default.noop", args=[job_id], task_id=job_id, producer=producer)
    with env.app.app_context():
        while True:
            done = db.session.execute(select(func.count()).select_from(Job).where(
                Job.id.in_(ids[-200:]), Job.state == "succeeded")).scalar_one()
            db.session.rollback()
            if done == 200 or time.perf_counter() - started > 600:
                break
            time.sleep(0.05)
        total = db.session.execute(select(func.count()).select_from(Job).where(
            Job.id.in_(ids), Job.state == "succeeded")).scalar_one()
    elapsed = time.perf_counter() - started
    stack.close()
    return total / elapsed


def _raw_throughput(env: Environment, n: int) -> float:
    import redis
    stack = env.stack("raw-throughput")
    os.environ["REDIS_URL"] = stack.redis_url
    try:
        from bench import raw_celery
        raw_celery.app.conf.broker_url = raw_celery.app.conf.result_backend = stack.redis_url
        for k in range(2):
            stack.start_worker(role=f"raw{k}", queues="raw", pool="solo", concurrency=1, app="bench.raw_celery",
                               wait=False)
        for _ in range(4):  # both up and idle before the clock starts
            raw_celery.noop.delay().get(timeout=60)
        r = redis.Redis.from_url(stack.redis_url)
        r.delete("raw:count")
        started = time.perf_counter()
        with raw_celery.app.connection_for_write() as conn:
            producer = raw_celery.app.amqp.Producer(conn)
            for _ in range(n):
                raw_celery.count.apply_async(producer=producer)
        while int(r.get("raw:count") or 0) < n and time.perf_counter() - started < 600:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        return int(r.get("raw:count") or 0) / elapsed
    finally:
        os.environ["REDIS_URL"] = env.redis_url
        stack.close()
