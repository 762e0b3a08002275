"""What a job's handler gets and raises: `JobContext` (events, progress, tokens, cancel and
deadline checks) and the exceptions that end or retry a job (worker/tasks/base.py turns them
into states).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import jobs
from shared.jobs import stream
from shared.jobs.publisher import publisher
from shared.payloads import Payload
from shared.redis_client import get_redis

log = logging.getLogger(__name__)
TOKEN_TTL_REFRESH = 5.0  # seconds between TTL refreshes of a stream while tokens flow
REDIS_OUTAGE_WAIT = 60.0  # seconds a streaming reply waits for Redis before it is retried later
INTERRUPT_EVERY = 0.2  # seconds between two checks of `JobContext.interruptible`


class JobFailed(Exception):
    """Ends the job as failed, not retried; `code` and `message` become its error."""
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Transient(Exception):
    """A failure worth retrying later (network, a 4xx from a server); `code` names it if retries run out."""

    def __init__(self, message: str, code: str = "retries_exhausted"):
        super().__init__(message)
        self.code = code


class Cancelled(Exception):
    """Raised inside a handler when the job was cancelled."""


class TimeLimitReached(JobFailed):
    """Raised at a check once the job's soft time limit has passed."""

    def __init__(self, seconds: float):
        super().__init__("time_limit", f"stopped after its time limit of {seconds:g} s")



@dataclass
class JobContext:
    """A running job as its handler sees it: ids, payload, attempt, time limit, and its events and checks."""
    job_id: str
    kind: str
    user_id: str | None
    payload: Payload | None  # the kind's model (shared.payloads); None only for a job whose input is invalid
    attempt: int
    time_limit: float = float("inf")  # seconds from `started`
    started: float = field(default_factory=time.monotonic)
    lease_lost: threading.Event = field(default_factory=threading.Event)
    new_payload: Payload | None = None  # stored in place of the payload when the job ends

    ttl_refreshed_at: float = 0.0

    def emit(self, event: str, data: dict[str, Any] | None = None) -> str:
        """Publish an event on the job's stream; return its entry id."""
        self.ttl_refreshed_at = time.monotonic()
        return stream.publish(get_redis(), self.job_id, event, data)

    def token(self, delta: str) -> None:
        """Stream one token; raises Cancelled when the job was cancelled (checked in the same round trip).

        If Redis is unreachable, the reply waits for it (up to REDIS_OUTAGE_WAIT seconds; a
        Redis restart takes a few) instead of failing: its clients reconnect with Last-Event-ID.
        Past that, the job is retried later, like any transient failure.
        """
        now = time.monotonic()
        refresh = now - self.ttl_refreshed_at > TOKEN_TTL_REFRESH
        if refresh:
            self.ttl_refreshed_at = now
        data = {"delta": delta, "t": round(time.time(), 4)}
        give_up = now + REDIS_OUTAGE_WAIT
        while True:
            try:
                cancelled = publisher.send(self.job_id, jobs.Event.token.value, data, refresh)
                break
            except (redis.ConnectionError, redis.TimeoutError, TimeoutError) as exc:
                if time.monotonic() > give_up:
                    raise Transient(f"Redis unreachable while streaming: {exc}", code="redis_unavailable") from exc
                log.warning("job %s: Redis unreachable while streaming; waiting for it", self.job_id)
                time.sleep(0.5)
        if cancelled or self.lease_lost.is_set():
            raise Cancelled()
        self.check_deadline()

    def progress(self, fraction: float, **data: Any) -> None:
        """Record the job's progress (clamped to 0..1) and publish a progress event with `data`."""
        fraction = max(0.0, min(1.0, fraction))
        jobs.progress(self.job_id, fraction)
        self.emit(jobs.Event.progress.value, {"progress": fraction, **data})

    def cancelled(self) -> bool:
        """Whether the job was cancelled or its lease was lost to another worker."""
        return self.lease_lost.is_set() or stream.is_cancelled(get_redis(), self.job_id)

    def check_cancelled(self) -> None:
        """Raises Cancelled when the job was cancelled, TimeLimitReached past its soft time limit."""
        if self.cancelled():
            raise Cancelled()
        self.check_deadline()

    def check_deadline(self) -> None:
        """Raise TimeLimitReached once the job has run longer than its soft time limit."""
        if time.monotonic() - self.started > self.time_limit:
            raise TimeLimitReached(self.time_limit)

    @contextmanager
    def interruptible(self):
        """Within the block, stop wherever the code is (a long parse between two checks) once the job
        is cancelled or taken over (its lease keeper saw it) or past its soft time limit.

        A timer signal checks every INTERRUPT_EVERY seconds, without I/O (a handler that used Redis
        could find its connection pool locked by the code it interrupted). Signals reach the main
        thread only: elsewhere (gevent, threads) the block runs with its own checks alone.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def check(_signum, _frame):
            if self.lease_lost.is_set():
                raise Cancelled()
            self.check_deadline()

        previous = signal.signal(signal.SIGALRM, check)
        signal.setitimer(signal.ITIMER_REAL, INTERRUPT_EVERY, INTERRUPT_EVERY)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

