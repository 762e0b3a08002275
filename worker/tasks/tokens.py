"""The token publisher: the tokens of every reply streaming in a worker process go to Redis together.

A reply's `JobContext.token` hands its token here and waits for it to be written (so its
order is kept and the cancel flag comes back with it). One flusher per process writes
whatever is pending in one pipeline (shared.jobs.stream.publish_tokens) as soon as the
previous write returned: nothing waits for a timer, so one stream's token goes out at once,
and under load the tokens of hundreds of replies share a round trip instead of one each.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from shared.jobs import stream
from shared.redis_client import get_redis

WAIT_LIMIT = 30.0  # seconds a token waits for its write before the reply treats Redis as gone


@dataclass
class _Pending:
    job_id: str
    data: dict[str, Any]
    refresh_ttl: bool
    written: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    error: BaseException | None = None


class TokenPublisher:
    """One per process (`tokens`); its flusher thread (a greenlet under gevent) starts on first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.pending: list[_Pending] = []
        self.pid: int | None = None

    def send(self, job_id: str, data: dict[str, Any], refresh_ttl: bool) -> bool:
        """Write one token event; True when the job was cancelled. Raises what the write raised."""
        item = _Pending(job_id, data, refresh_ttl)
        with self.lock:
            if self.pid != os.getpid():  # first use in this (possibly forked) process
                self.pid, self.pending = os.getpid(), []
                threading.Thread(target=self._flush_forever, name="token-publisher", daemon=True).start()
            self.pending.append(item)
            self.ready.set()
        if not item.written.wait(WAIT_LIMIT):
            raise TimeoutError("the token was not written in time")
        if item.error is not None:
            raise item.error
        return item.cancelled

    def _flush_forever(self) -> None:
        while True:
            self.ready.wait()
            with self.lock:
                batch, self.pending = self.pending, []
                self.ready.clear()
            if batch:
                self._flush(batch)

    @staticmethod
    def _flush(batch: list[_Pending]) -> None:
        try:
            flags = stream.publish_tokens(get_redis(), [(p.job_id, p.data, p.refresh_ttl) for p in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting reply, which retries or fails
            for p in batch:
                p.error = exc
                p.written.set()
            return
        for p in batch:
            p.cancelled = flags[p.job_id]
            p.written.set()


tokens = TokenPublisher()
