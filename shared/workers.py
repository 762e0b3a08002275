"""Worker presence: each worker marks the queues it consumes in Redis every few seconds.

A sorted set per queue holds worker names scored by their last beat; the API's readiness
check counts the ones seen within ALIVE_WITHIN seconds.
"""
from __future__ import annotations

import time

import redis

from shared.celery_config import QUEUES

ALIVE_WITHIN = 15.0


def _key(queue: str) -> str:
    return f"workers:alive:{queue}"


def beat(r: redis.Redis, worker: str, queues: list[str]) -> None:
    """Mark `worker` alive now on each of `queues`, dropping entries long stale."""
    now = time.time()
    pipe = r.pipeline(transaction=False)
    for q in queues:
        pipe.zadd(_key(q), {worker: now})
        pipe.zremrangebyscore(_key(q), 0, now - 10 * ALIVE_WITHIN)
        pipe.expire(_key(q), int(10 * ALIVE_WITHIN))
    pipe.execute()


def gone(r: redis.Redis, worker: str, queues: list[str]) -> None:
    """Remove `worker` from each of `queues` (it is stopping)."""
    pipe = r.pipeline(transaction=False)
    for q in queues:
        pipe.zrem(_key(q), worker)
    pipe.execute()


def alive_queues(r: redis.Redis) -> set[str]:
    """Return the queues on which a worker beat within ALIVE_WITHIN seconds."""
    cutoff = time.time() - ALIVE_WITHIN
    pipe = r.pipeline(transaction=False)
    for q in QUEUES:
        pipe.zcount(_key(q), cutoff, "+inf")
    return {q for q, n in zip(QUEUES, pipe.execute(), strict=True) if n}
