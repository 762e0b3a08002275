"""Server-Sent Events for a job: entries from its Redis Stream, resumable, with keep-alives.

Runs without touching the database: the caller checks ownership and ends its session
first, so that hundreds of open streams hold no database connection. For a job that is
already over the caller passes the record's final event, replayed when the stream holds
no terminal entry (expired, or not yet written).
"""
from __future__ import annotations

import json
import time
from typing import Callable, Iterator

from shared import events
from shared.redis_client import get_blocking_redis
from shared.settings import get_settings


def format_event(entry_id: str | None, event: str, data: dict) -> str:
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


def stream(job_id: str, last_id: str, final: tuple[str, dict] | None,
           recheck: Callable[[], tuple[str, dict] | None] | None = None) -> Iterator[str]:
    """Yield SSE frames until a terminal event; `final` is replayed if the stream lacks one.

    `recheck` is asked at each keep-alive whether the job has ended meanwhile, so that a
    terminal event lost to a Redis blink cannot leave the client waiting.
    """
    r = get_blocking_redis()
    keepalive_ms = int(get_settings().SSE_KEEPALIVE_SECONDS * 1000)
    yield "retry: 2000\n\n"
    after = last_id or "0"
    deadline = time.monotonic() + 6 * 3600  # no stream is held open forever
    while time.monotonic() < deadline:
        # A finished job's stream is read without waiting; a live one waits for new entries.
        entries = events.read(r, job_id, after, None if final is not None else keepalive_ms)
        if not entries:
            if final is not None:  # over, and its terminal entry is gone or not yet written
                yield format_event(None, final[0], final[1])
                return
            final = recheck() if recheck else None
            if final is None:
                yield ": keep-alive\n\n"
            continue
        for entry_id, name, data in entries:
            after = entry_id
            yield format_event(entry_id, name, data)
            if name in events.TERMINAL_EVENTS:
                return
