"""The baseline: raw Celery on the same Redis, no-op tasks, no job records or events."""
from __future__ import annotations

import os

import redis
from celery import Celery

app = Celery("raw", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.update(task_default_queue="raw", worker_prefetch_multiplier=1, task_acks_late=True,
                worker_hijack_root_logger=False)
_r = None


@app.task(name="raw.noop")
def noop() -> None:
    return None


@app.task(name="raw.count", ignore_result=True)
def count() -> None:
    global _r
    _r = _r or redis.Redis.from_url(os.environ["REDIS_URL"])
    _r.incr("raw:count")
