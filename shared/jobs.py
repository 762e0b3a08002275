"""The job contract: kinds, their task names, creating a job record and dispatching it.

The record is written first, in the caller's transaction, and sent to Celery only after
that transaction commits. A send that fails leaves `dispatched_at` empty, and the beat's
sweeper sends it again; so does a crash between commit and send, and a message lost with
its consumer (after REQUEUE_LOST_AFTER, when the broker holds it nowhere). Tasks receive the job id, never objects.
"""
from __future__ import annotations

import logging

from sqlalchemy import bindparam, func, insert, select, update

from shared.celery_config import make_celery
from shared.database import db, utcnow, write_tx
from shared.models import Job, JobState
from shared.models.job import ACTIVE_STATES
from shared.models.user import new_id
from shared.payloads import PAYLOADS, Payload
from shared.settings import get_settings

log = logging.getLogger(__name__)

# kind -> task name; the task name's prefix is its queue (see shared.celery_config).
KIND_TASKS: dict[str, str] = {
    "mail": "mail.send",
    "chat": "llm.chat_reply",
    "file": "files.process",
    "tts": "tts.synthesize",
    "speech": "tts.speak_reply",
    "noop": "default.noop",  # a probe: the job lifecycle with no work (benchmarks, smoke checks)
}

_celery = None


class JobLimitExceeded(Exception):
    def __init__(self, kind: str, limit: int):
        super().__init__(f"at most {limit} {kind} jobs may be queued or running at once")
        self.kind = kind
        self.limit = limit


def celery_client():
    global _celery
    if _celery is None:
        _celery = make_celery("mentor-client")
    return _celery


# Built once: the enqueue path runs it on every request.
_ACTIVE_JOBS = select(func.count()).select_from(Job).where(
    Job.user_id == bindparam("user_id"), Job.kind == bindparam("kind"), Job.state.in_(ACTIVE_STATES))


def active_jobs(user_id: str, kind: str) -> int:
    return db.session.execute(_ACTIVE_JOBS, {"user_id": user_id, "kind": kind}).scalar_one()


def new_job(kind: str, user_id: str | None, payload: Payload, request_id: str | None = None,
            session_id: str | None = None) -> Job:
    """Insert a queued job in the current transaction (call inside `write_tx`); enforces the per-user limit.

    `session_id` is the sign-in session that asked for it: the URLs in its events are signed for that session.
    """
    if kind not in KIND_TASKS:
        raise ValueError(f"unknown job kind {kind!r}")
    if type(payload) is not PAYLOADS[kind]:
        raise TypeError(f"a {kind} job takes a {PAYLOADS[kind].__name__}, not {type(payload).__name__}")
    if user_id is not None:
        limit = get_settings().MAX_ACTIVE_JOBS_PER_KIND
        if active_jobs(user_id, kind) >= limit:
            raise JobLimitExceeded(kind, limit)
    now = utcnow()
    values = {"id": new_id(), "kind": kind, "user_id": user_id, "payload": payload.model_dump(mode="json"),
              "request_id": request_id, "session_id": session_id, "state": JobState.queued.value, "progress": 0.0,
              "attempts": 0, "dispatched_at": now, "created_at": now, "updated_at": now}
    db.session.execute(insert(Job), [values])  # a Core insert: no unit-of-work flush on the hot path
    return Job(**values)  # a detached copy for the caller (ids, kind, dispatch)


def send(job_id: str, kind: str) -> None:
    """Publish the task message (the job id only: the worker reads the rest, request id too, from
    the record). Raises when the broker cannot be reached."""
    celery_client().send_task(KIND_TASKS[kind], args=[job_id], task_id=job_id)


def dispatch(job: Job) -> bool:
    """Send a committed job to its queue; on failure leave it for the sweeper."""
    try:
        send(job.id, job.kind)
        return True
    except Exception:  # broker down: the record is durable, the sweeper sends it later
        log.warning("dispatch of job %s failed; the sweeper will send it", job.id, exc_info=True)
        try:
            with write_tx():
                db.session.execute(update(Job).where(Job.id == job.id).values(dispatched_at=None))
        except Exception:
            log.exception("could not mark job %s undispatched", job.id)
        return False
