"""A job's event stream: a Redis Stream per job, written by its worker (and by a cancel), read by SSE.

Each entry has fields `e` (the event name, shared.jobs.events.Event) and `d` (JSON data).
Entry ids are the SSE ids, so a client resumes with Last-Event-ID. Streams are capped in
length and expire JOB_EVENTS_TTL seconds after their last event.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis

from shared.jobs.events import Event
from shared.settings import get_settings


def stream_key(job_id: str) -> str:
    """The Redis key of a job's event stream."""
    return f"job:{job_id}:events"


def cancel_key(job_id: str) -> str:
    """The Redis key of a job's cancel flag (its worker checks it with each token)."""
    return f"job:{job_id}:cancel"


def _dumps(data: dict[str, Any] | None) -> str:
    return json.dumps(data or {}, separators=(",", ":"))


def publish(r: redis.Redis, job_id: str, event: str, data: dict[str, Any] | None = None) -> str:
    """Append one event and refresh the stream's TTL; returns the entry id."""
    s = get_settings()
    key = stream_key(job_id)
    pipe = r.pipeline(transaction=False)
    pipe.xadd(key, {"e": str(event), "d": _dumps(data)}, maxlen=s.JOB_EVENTS_MAXLEN, approximate=True)
    pipe.expire(key, s.JOB_EVENTS_TTL)
    entry_id, _ = pipe.execute()
    return entry_id


def flag_cancel(r: redis.Redis, job_id: str) -> None:
    """Raise the job's cancel flag for its worker."""
    r.set(cancel_key(job_id), "1", ex=get_settings().JOB_EVENTS_TTL)


def is_cancelled(r: redis.Redis, job_id: str) -> bool:
    """Whether the job's cancel flag is up."""
    return bool(r.exists(cancel_key(job_id)))


def publish_many(r: redis.Redis, events: list[tuple[str, str, dict[str, Any], bool]]) -> dict[str, bool]:
    """Append the events of many jobs (job id, event, data, refresh the TTL?) in one round trip, in
    order; answers each job's cancel flag, read in the same pipeline."""
    s = get_settings()
    pipe = r.pipeline(transaction=False)
    for job_id, event, data, refresh_ttl in events:
        key = stream_key(job_id)
        pipe.xadd(key, {"e": str(event), "d": _dumps(data)}, maxlen=s.JOB_EVENTS_MAXLEN, approximate=True)
        if refresh_ttl:
            pipe.expire(key, s.JOB_EVENTS_TTL)
    jobs = list(dict.fromkeys(job_id for job_id, _event, _data, _refresh in events))
    for job_id in jobs:
        pipe.exists(cancel_key(job_id))
    flags = pipe.execute()[-len(jobs):]
    return {job_id: bool(flag) for job_id, flag in zip(jobs, flags, strict=True)}


def decode(entries) -> list[tuple[str, str, dict]]:
    """Stream entries as Redis returns them -> (entry id, event name, data)."""
    return [(entry_id, fields.get("e", "message"), json.loads(fields.get("d") or "{}")) for entry_id, fields in entries]


def read(r: redis.Redis, job_id: str, after: str, block_ms: int | None) -> list[tuple[str, str, dict]]:
    """Entries after `after` ("0" for all), waiting up to block_ms for the first one (None: no wait)."""
    reply = r.xread({stream_key(job_id): after}, count=500, block=block_ms)
    return [entry for _key, entries in reply or [] for entry in decode(entries)]


def history(r: redis.Redis, job_id: str) -> Iterator[tuple[str, str, dict]]:
    """Every entry the stream still holds, oldest first."""
    yield from decode(r.xrange(stream_key(job_id)))


def streamed_text(r: redis.Redis, job_id: str) -> str:
    """The text a streaming job has sent so far: its token deltas since its last (re)start."""
    parts: list[str] = []
    for _entry_id, name, data in history(r, job_id):
        if name == Event.restarted.value:
            parts = []
        elif name == Event.token.value:
            parts.append(data.get("delta", ""))
    return "".join(parts)
