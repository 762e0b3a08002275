"""Jobs as their owners see them: lookup with ownership, listing, the 202 envelope, the event
stream and cancellation."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import redis
from flask import current_app, g, request
from sqlalchemy import Row, bindparam, select, update

from api.errors import APIError
from api.schemas.jobs import EVENT_ID
from api.security import url_binding
from api.services import sse
from api.services.identity import Caller
from api.services.paging import page
from api.services.stream_slots import StreamSlot
from shared import jobs
from shared.database import db, write_tx
from shared.jobs import Created
from shared.jobs.lifecycle import JOBS
from shared.models import File, FileStatus, Job, JobState, Message, MessageStatus
from shared.models.job import ACTIVE_STATES
from shared.payloads import Payload
from shared.signing import audio_url, job_urls


def list_owned(user: Caller, limit: int, offset: int, kind: str | None, state: str | None) -> dict:
    """A page of the user's jobs, newest first, with the total."""
    stmt = select(Job).where(Job.user_id == user.id)
    if kind:
        stmt = stmt.where(Job.kind == kind)
    if state:
        stmt = stmt.where(Job.state == state)
    return page(stmt, (Job.created_at.desc(), Job.id), limit, offset, to_dict)


def _final(job: Row | None) -> tuple[str, dict] | None:
    if job is None:
        return "error", {"state": "failed", "error": {"code": "gone"}}
    return jobs.final_event(job.state, job.result, job.error)


def event_stream(job: Row, user: Caller | None, last_id: str) -> tuple[Iterator[str], Callable[[], None]]:
    """The SSE frames of an owned job from `last_id` on, and what to call when the response closes.

    Takes one of the owner's stream slots (429 `too_many_streams` past MAX_STREAMS_PER_USER; an
    anonymous link counts per client IP) and ends the database session: an open stream holds
    no database connection.
    """
    if last_id and not EVENT_ID.match(last_id):
        raise APIError(400, "invalid_last_event_id", "Last-Event-ID must look like 1700000000000-0")
    final, job_id = _final(job), job.id
    slot = StreamSlot.open(f"user:{user.id}" if user else f"ip:{request.remote_addr}")
    db.session.remove()
    app = current_app._get_current_object()

    def recheck():
        with app.app_context():
            return _final(db.session.execute(_READ.where(JOBS.c.id == job_id)).first())

    def frames():
        try:
            yield from sse.stream(job_id, last_id, final, recheck, slot.touch)
        except redis.exceptions.RedisError:
            return  # the client reconnects with Last-Event-ID

    return frames(), slot.close


def envelope(job_id: str) -> dict:
    """The 202 envelope of a job: its id and its URLs, signed for the caller (plain for a signed request)."""
    return {"job_id": job_id, **job_urls(job_id, url_binding())}


def caller_session() -> str | None:
    """The caller's sign-in session, recorded on the jobs it creates (the worker signs their event URLs for it)."""
    binding = url_binding()
    return binding.session if binding is not None else None


def _fresh(result: dict | None) -> dict | None:
    """Results name audio by id; the URL (its signature expires) is made at read time."""
    if result and result.get("audio_id"):
        return {**result, "audio_url": audio_url(url_binding(), result["audio_id"])}
    return result


def to_dict(job: Row | Job) -> dict:
    """The job as its owner sees it; its URLs are signed for the caller (plain when a signature authorised the read)."""
    return {
        "id": job.id, "kind": job.kind, "state": job.state, "progress": job.progress,
        "result": _fresh(job.result), "error": job.error, "attempts": job.attempts, "request_id": job.request_id,
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
        "updated_at": job.updated_at, **job_urls(job.id, url_binding()),
    }


# What an owner reads of a job: one Core SELECT by primary key and owner (the hot path of polling).
_READ = select(*(JOBS.c[name] for name in ("id", "kind", "state", "progress", "result", "error", "attempts",
                                            "request_id", "created_at", "started_at", "finished_at", "updated_at")))


_READ_OWNED = _READ.where(JOBS.c.id == bindparam("job_id"), JOBS.c.user_id == bindparam("user_id"))
_READ_OWNERLESS = _READ.where(JOBS.c.id == bindparam("job_id"), JOBS.c.user_id.is_(None))


def _read(job_id: str, user_id: str | None) -> Row | None:
    """The job's row if `user_id` owns it (None: a job without an owner); built once, bound per call."""
    # A pooled connection of its own, outside the request's session: one SELECT needs no unit of
    # work, and a stream that follows holds no transaction.
    with db.engine.connect().execution_options(single_read=True) as conn:
        if user_id is None:
            return conn.execute(_READ_OWNERLESS, {"job_id": job_id}).first()
        return conn.execute(_READ_OWNED, {"job_id": job_id, "user_id": user_id}).first()


def get_owned(job_id: str, user: Caller | None) -> Row:
    """The job (a read-only row) if the caller owns it; 404 otherwise (also for another user's job).

    An anonymous signed URL reads only jobs without an owner."""
    if len(job_id) > 64 or (user is None and not g.get("signed_anonymous")):
        raise APIError(404, "not_found", "no such job")
    job = _read(job_id, user.id if user else None)
    if job is None:
        raise APIError(404, "not_found", "no such job")
    return job


def enqueue(kind: str, user_id: str | None, payload: Payload) -> Created:
    """Write a job record, commit, then dispatch it."""
    with write_tx():
        job = jobs.new_job(kind, user_id, payload, request_id=g.get("request_id"),
                      session_id=caller_session() if user_id else None)
    jobs.dispatch(job)
    return job


def cancel(job: Row | Job) -> Row:
    """Cancel a queued or running job (shared.jobs.cancel); its worker stops at its next check.

    A running job's worker owns its rows until it stops, and applies the cancel to them (the
    sweeper does, if that worker died). A job cancelled while queued was never held: it has
    ended, and what it was to make is marked here at once (its file failed, its reply cancelled).
    """
    if job.state not in ACTIVE_STATES:
        raise APIError(409, "not_cancellable", f"the job is already {job.state}")
    was = jobs.cancel(job.id)
    if was is None:
        raise APIError(409, "not_cancellable", f"the job is already {db.session.get(Job, job.id).state}")
    if was == JobState.queued.value:
        with write_tx():
            db.session.execute(update(File).where(File.job_id == job.id, File.status == FileStatus.processing.value)
                               .values(status=FileStatus.failed.value, error=jobs.CANCEL_ERROR))
            db.session.execute(update(Message).where(Message.job_id == job.id,
                                                     Message.status == MessageStatus.streaming.value)
                               .values(status=MessageStatus.cancelled.value, content=""))
    return db.session.execute(_READ.where(JOBS.c.id == job.id)).first()
