"""Job events: a Redis Stream per job, written by workers and read by the API's SSE endpoint.

Each entry has fields `e` (the event name) and `d` (JSON data). Entry ids are the SSE ids,
so a client resumes with Last-Event-ID. Streams are capped in length and expire
JOB_EVENTS_TTL seconds after their last event.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis

from shared.settings import get_settings

TERMINAL_EVENTS = {"done", "error", "cancelled"}
# A job's final state -> its terminal event (the worker and the cancel publish these; a stream
# that lost its terminal entry gets it made from the record).
FINAL_EVENTS = {"succeeded": "done", "failed": "error", "cancelled": "cancelled"}


def final_event(state: str, result: dict | None, error: dict | None) -> tuple[str, dict] | None:
    """The terminal event of a job that ended (None while it is queued or running)."""
    name = FINAL_EVENTS.get(state)
    if name is None:
        return None
    return name, ({"state": state, "result": result} if name == "done" else {"state": state, "error": error})


def stream_key(job_id: str) -> str:
    return f"job:{job_id}:events"


def cancel_key(job_id: str) -> str:
    return f"job:{job_id}:cancel"


def publish(r: redis.Redis, job_id: str, event: str, data: dict[str, Any] | None = None) -> str:
    s = get_settings()
    key = stream_key(job_id)
    pipe = r.pipeline(transaction=False)
    pipe.xadd(key, {"e": event, "d": json.dumps(data or {}, separators=(",", ":"))},
              maxlen=s.JOB_EVENTS_MAXLEN, approximate=True)
    pipe.expire(key, s.JOB_EVENTS_TTL)
    entry_id, _ = pipe.execute()
    return entry_id


def publish_token(r: redis.Redis, job_id: str, data: dict[str, Any], refresh_ttl: bool) -> bool:
    """Append a `token` event and tell whether the job was cancelled, in one round trip.

    Tokens are the bulk of all events: the stream's TTL is refreshed only when asked (the
    caller does it now and then), and the cancel flag comes back with the same reply.
    """
    s = get_settings()
    key = stream_key(job_id)
    pipe = r.pipeline(transaction=False)
    pipe.xadd(key, {"e": "token", "d": json.dumps(data, separators=(",", ":"))},
              maxlen=s.JOB_EVENTS_MAXLEN, approximate=True)
    if refresh_ttl:
        pipe.expire(key, s.JOB_EVENTS_TTL)
    pipe.exists(cancel_key(job_id))
    return bool(pipe.execute()[-1])


def decode(entries) -> list[tuple[str, str, dict]]:
    """Stream entries as Redis returns them -> (entry id, event name, data)."""
    return [(entry_id, fields.get("e", "message"), json.loads(fields.get("d") or "{}")) for entry_id, fields in entries]


def read(r: redis.Redis, job_id: str, after: str, block_ms: int | None) -> list[tuple[str, str, dict]]:
    """Entries after `after` ("0" for all), waiting up to block_ms for the first one (None: no wait)."""
    reply = r.xread({stream_key(job_id): after}, count=500, block=block_ms)
    return [entry for _key, entries in reply or [] for entry in decode(entries)]


def history(r: redis.Redis, job_id: str) -> Iterator[tuple[str, str, dict]]:
    yield from decode(r.xrange(stream_key(job_id)))


def streamed_text(r: redis.Redis, job_id: str) -> str:
    """The text a streaming job has sent so far: its token deltas since its last (re)start."""
    parts: list[str] = []
    for _entry_id, name, data in history(r, job_id):
        if name == "restarted":
            parts = []
        elif name == "token":
            parts.append(data.get("delta", ""))
    return "".join(parts)
