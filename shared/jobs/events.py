"""The names of a job's events, and the terminal event each final state is announced with.

A job's stream (shared.jobs.stream) carries these names; clients read them as SSE event
names, so they are a contract.
"""
from __future__ import annotations

import enum


class Event(str, enum.Enum):
    """Every event a job's stream carries."""

    progress = "progress"  # {progress, ...} or {retrying_in, reason}
    restarted = "restarted"  # {attempt}: a re-run starts over (its deltas replace the earlier ones)
    token = "token"  # {delta, t}: one piece of a streamed reply
    citations = "citations"  # {citations}: the course material a reply uses
    speech = "speech"  # {job_id, ...urls}: the speech job that speaks a reply
    audio = "audio"  # {audio_id, audio_url, ...}: one synthesised piece
    done = "done"  # {state: succeeded, result}
    error = "error"  # {state: failed, error: {code, message}}
    cancelled = "cancelled"  # {state: cancelled, error: {code, message}}


TERMINAL_EVENTS = frozenset({Event.done.value, Event.error.value, Event.cancelled.value})
# A job's final state -> its terminal event.
FINAL_EVENTS = {"succeeded": Event.done.value, "failed": Event.error.value, "cancelled": Event.cancelled.value}


def final_event(state: str, result: dict | None, error: dict | None) -> tuple[str, dict] | None:
    """The terminal event of a job that ended (None while it is queued or running).

    The lifecycle publishes it when the job ends; a stream that lost it (expired, trimmed,
    Redis restarted) gets it made from the record by the same rule.
    """
    name = FINAL_EVENTS.get(state)
    if name is None:
        return None
    if name == Event.done.value:
        return name, {"state": state, "result": result}
    return name, {"state": state, "error": error}
