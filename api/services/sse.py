"""Server-Sent Events for a job: entries from its Redis Stream, resumable, with keep-alives.

Runs without touching the database: the caller checks ownership and ends its session
first, so that hundreds of open streams hold no database connection. For a job that is
already over the caller passes the record's final event, replayed when the stream holds
no terminal entry (expired, or not yet written).

Live streams share one reader per process (`StreamHub`): a single XREAD BLOCK over every
stream that this process's clients follow, whose entries are handed to each follower's
queue. A thousand open streams are then one Redis connection and one round trip per batch
of events, not one blocked connection and one round trip per event per client.

Open streams are counted per owner in Redis (api/services/stream_slots.py).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import redis

from shared.jobs import TERMINAL_EVENTS
from shared.jobs import stream as job_stream
from shared.redis_client import get_blocking_redis
from shared.settings import get_settings

log = logging.getLogger(__name__)
Entry = tuple[str, str, dict]


def format_event(entry_id: str | None, event: str, data: dict) -> str:
    """Return one SSE frame: an id line when there is one, the event, and the data as compact JSON."""
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


class StreamHub:
    """One reader for every followed job stream of this process; followers get batches on a queue.

    Each follower catches up on its own first, then joins at the last id it saw; the hub
    reads each stream from the earliest position any of its followers needs, and a follower
    drops entries it already has. A joiner wakes the hub's blocked read through a private
    wake-up stream. If Redis fails, every follower gets the error (its client reconnects
    with Last-Event-ID) and the hub tries again.
    """

    WAKE_MAXLEN = 16

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.wake_key = f"sse:wake:{uuid.uuid4().hex}"
        self._lock = threading.Lock()
        self._followers: dict[str, set[queue.Queue]] = {}
        self._positions: dict[str, str] = {}
        self._thread: threading.Thread | None = None

    def follow(self, job_id: str, after: str) -> queue.Queue:
        """Start following a job's stream after entry `after`; the returned queue gets its batches or an error."""
        key = job_stream.stream_key(job_id)
        q: queue.Queue = queue.Queue()  # (start position of the read, entries) or an exception
        with self._lock:
            self._followers.setdefault(key, set()).add(q)
            known = self._positions.get(key)
            if known is None or _order(after) < _order(known):
                self._positions[key] = after
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sse-hub", daemon=True)
                self._thread.start()
        try:
            pipe = get_blocking_redis().pipeline(transaction=False)
            pipe.xadd(self.wake_key, {"w": "1"}, maxlen=self.WAKE_MAXLEN, approximate=True)
            pipe.expire(self.wake_key, 3600)
            pipe.execute()
        except redis.RedisError:
            pass  # the hub's read fails too, and tells every follower
        return q

    def unfollow(self, job_id: str, q: queue.Queue) -> None:
        """Stop handing a job's entries to this queue; the hub stops reading a stream nobody follows."""
        key = job_stream.stream_key(job_id)
        with self._lock:
            followers = self._followers.get(key)
            if followers is not None:
                followers.discard(q)
                if not followers:
                    del self._followers[key]
                    self._positions.pop(key, None)

    def _run(self) -> None:
        r = get_blocking_redis()
        block_ms = int(get_settings().SSE_KEEPALIVE_SECONDS * 1000)
        wake_after = "0-0"  # a wake-up written before the first read is seen too
        while True:
            with self._lock:
                if not self._followers:
                    self._thread = None
                    return
                wanted = {self.wake_key: wake_after, **self._positions}
            try:
                reply = r.xread(wanted, count=500, block=block_ms)
            except redis.RedisError as exc:
                self._fail(exc)
                time.sleep(0.5)
                continue
            for key, entries in reply or []:
                if not entries:
                    continue
                last = entries[-1][0]
                if key == self.wake_key:
                    wake_after = last
                    continue
                batch = job_stream.decode(entries)
                with self._lock:
                    # A joiner may have moved the position back meanwhile: then it stays back.
                    if self._positions.get(key) == wanted[key]:
                        self._positions[key] = last
                    followers = list(self._followers.get(key, ()))
                for q in followers:
                    q.put((wanted[key], batch))

    def _fail(self, exc: Exception) -> None:
        with self._lock:
            followers = [q for qs in self._followers.values() for q in qs]
        for q in followers:
            q.put(exc)


_hub: StreamHub | None = None
_hub_lock = threading.Lock()


def hub() -> StreamHub:
    """This process's hub (a new one after a fork)."""
    global _hub
    with _hub_lock:
        if _hub is None or _hub.pid != os.getpid():
            _hub = StreamHub()
        return _hub


def stream(job_id: str, last_id: str, final: tuple[str, dict] | None,
           recheck: Callable[[], tuple[str, dict] | None] | None = None,
           alive: Callable[[], None] | None = None) -> Iterator[str]:
    """Yield SSE frames until a terminal event; `final` is replayed if the stream lacks one.

    `recheck` is asked at each keep-alive whether the job has ended meanwhile, so that a
    terminal event lost to a Redis blink cannot leave the client waiting. `alive` is called
    whenever the stream waited or sent (StreamSlot.touch renews the stream's slot).
    """
    r = get_blocking_redis()
    keepalive = get_settings().SSE_KEEPALIVE_SECONDS
    yield "retry: 2000\n\n"
    after = last_id or "0"
    # Catch up on what is there already, without waiting.
    while True:
        entries = job_stream.read(r, job_id, after, None)
        for entry_id, name, data in entries:
            after = entry_id
            yield format_event(entry_id, name, data)
            if name in TERMINAL_EVENTS:
                return
        if len(entries) < 500:
            break
    if final is not None:  # over, and its terminal entry is gone or not yet written
        yield format_event(None, final[0], final[1])
        return
    h = hub()
    q = h.follow(job_id, after)
    deadline = time.monotonic() + 6 * 3600  # no stream is held open forever
    try:
        while time.monotonic() < deadline:
            try:
                batch = q.get(timeout=keepalive)
            except queue.Empty:
                if alive:
                    alive()
                final = recheck() if recheck else None
                if final is not None:
                    # Ended meanwhile: send what the stream still holds, then the end.
                    for entry_id, name, data in job_stream.read(r, job_id, after, None):
                        yield format_event(entry_id, name, data)
                        if name in TERMINAL_EVENTS:
                            return
                    yield format_event(None, final[0], final[1])
                    return
                yield ": keep-alive\n\n"
                continue
            if isinstance(batch, Exception):
                raise batch
            if alive:
                alive()
            start, entries = batch
            if _order(start) > _order(after):
                continue  # read past what this follower has: the hub reads again from its position
            for entry_id, name, data in entries:
                if _order(entry_id) <= _order(after):
                    continue  # another follower of this job needed it; this one has it
                after = entry_id
                yield format_event(entry_id, name, data)
                if name in TERMINAL_EVENTS:
                    return
    finally:
        h.unfollow(job_id, q)
