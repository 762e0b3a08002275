"""The Celery-side figures of the pipeline section: raw Celery's round trip, and worker throughput
of no-op jobs through our task wrapper beside raw Celery no-op tasks (both on 2 solo worker
processes started the same way: short jobs scale by processes).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from bench.harness import Environment, summary_ms

WORKERS = 2  # solo worker processes, for ours and for raw Celery


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


def raw_roundtrip(env: Environment, n: int) -> dict:
    """Raw Celery `delay().get()` of a no-op task, one at a time, on a solo worker: p50, p99 and its RSS."""
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


def our_throughput(env: Environment, n: int) -> float:
    """No-op jobs per second through our task wrapper (claim, lease, `done` event, finish) on WORKERS solo workers."""
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
    for k in range(WORKERS):  # up and idle before the clock starts
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


def raw_throughput(env: Environment, n: int) -> float:
    """Raw Celery no-op tasks per second on WORKERS solo workers, sent the same way."""
    import redis
    stack = env.stack("raw-throughput")
    os.environ["REDIS_URL"] = stack.redis_url
    try:
        from bench import raw_celery
        raw_celery.app.conf.broker_url = raw_celery.app.conf.result_backend = stack.redis_url
        for k in range(WORKERS):
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
