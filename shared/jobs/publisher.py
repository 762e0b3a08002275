"""The event publisher: the events of every job running in a process go to Redis together.

A reply's tokens are sent with `send`, which waits for the write (so their order is kept, and
the job's cancel flag comes back with it). A job's terminal event is handed over with `post`,
which does not wait: the job's state is already committed, and an SSE client that misses
the event (the process died first, Redis blinked) gets it from the record at its next
keep-alive (api/services/sse.py). One flusher per process writes whatever is pending in one
pipeline (shared.jobs.stream.publish_many) as soon as the previous write returned: nothing
waits for a timer, so one stream's event goes out at once, and under load the events of
hundreds of jobs share a round trip instead of one each. `flush` writes what is left when a
worker process stops.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from shared.jobs import stream
from shared.redis_client import get_redis

log = logging.getLogger(__name__)
WAIT_LIMIT = 30.0  # seconds a token waits for its write before the reply treats Redis as gone


@dataclass
class _Pending:
    job_id: str
    event: str
    data: dict[str, Any]
    refresh_ttl: bool
    written: threading.Event | None = field(default_factory=threading.Event)  # None: nobody waits
    cancelled: bool = False
    error: BaseException | None = None


class EventPublisher:
    """One per process (`publisher`); its flusher thread (a greenlet under gevent) starts on first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.pending: list[_Pending] = []
        self.pid: int | None = None

    def send(self, job_id: str, event: str, data: dict[str, Any], refresh_ttl: bool) -> bool:
        """Write one event and wait for it; True when the job was cancelled. Raises what the write raised."""
        item = _Pending(job_id, event, data, refresh_ttl)
        self._queue(item)
        if not item.written.wait(WAIT_LIMIT):
            raise TimeoutError("the event was not written in time")
        if item.error is not None:
            raise item.error
        return item.cancelled

    def post(self, job_id: str, event: str, data: dict[str, Any]) -> None:
        """Hand over one event (the stream's TTL refreshed) without waiting for its write."""
        self._queue(_Pending(job_id, event, data, True, written=None))

    def flush(self) -> None:
        """Write what is pending now, in the caller's thread (a stopping process)."""
        with self.lock:
            batch, self.pending = self.pending, []
        if batch:
            self._write(batch)

    def _queue(self, item: _Pending) -> None:
        with self.lock:
            if self.pid != os.getpid():  # first use in this (possibly forked) process
                self.pid, self.pending = os.getpid(), []
                threading.Thread(target=self._flush_forever, name="event-publisher", daemon=True).start()
            self.pending.append(item)
            self.ready.set()

    def _flush_forever(self) -> None:
        while True:
            self.ready.wait()
            with self.lock:
                batch, self.pending = self.pending, []
                self.ready.clear()
            if batch:
                self._write(batch)

    @staticmethod
    def _write(batch: list[_Pending]) -> None:
        try:
            flags = stream.publish_many(get_redis(), [(p.job_id, p.event, p.data, p.refresh_ttl) for p in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting job, which retries or fails
            posted = sum(p.written is None for p in batch)
            if posted:
                log.warning("%d terminal events not written (%s); their streams' clients read them from the "
                            "job records", posted, exc)
            for p in batch:
                p.error = exc
                if p.written is not None:
                    p.written.set()
            return
        for p in batch:
            p.cancelled = flags[p.job_id]
            if p.written is not None:
                p.written.set()


publisher = EventPublisher()
