"""A job's life: every transition of its record, each one conditional statement.

    create ──► queued ──claim──► running ──succeed──► succeeded   (event `done`)
                 ▲  │              │  │ └───fail────► failed      (event `error`)
                 │  │              │  └─retry──► queued (dispatched later, by Celery's retry)
                 │  └──cancel──┐   └────cancel──► cancelled        (event `cancelled`)
                 │             ▼                     │ its holder (or the sweeper) settles it
      redispatch (sweeper)  cancelled                ▼
                                               rows finalised once (`settle_cancel`)

- `create` writes the record in the caller's transaction; `dispatch` sends it after commit. A
  send that fails leaves `dispatched_at` empty and the sweeper's `redispatch` sends it.
- `claim` takes a queued job in one UPDATE ... RETURNING, or takes over a running one whose
  lease expired or whose holder (a process on this host) is gone; `renew` extends the leases
  of a process's jobs. A job delivered twice runs once at a time.
- `succeed` and `fail` write the final state (only while the caller still holds the job),
  then hand the terminal event to the process's publisher (not waited for: the record has
  it). `retry` puts it back to queued for Celery's retry.
- `cancel` records the request: the state, and the flag the holder checks. While a job runs,
  its worker owns its rows: it applies the cancel, and `settle_cancel` (which it, or the
  sweeper for a dead worker, calls) says exactly once who finalises them. A job cancelled while
  queued was never held: its rows are the cancelling service's to end.
Nothing else writes a job's state. Core statements: this is the hot path of every job.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update

from shared.database import db, utcnow, write_tx
from shared.jobs import stream
from shared.jobs.events import final_event
from shared.jobs.holders import Claimed, is_dead, this_process
from shared.jobs.kinds import KIND_TASKS, send
from shared.jobs.publisher import publisher
from shared.models import Job, JobState
from shared.models.job import ACTIVE_STATES, TERMINAL_STATES
from shared.models.user import new_id
from shared.payloads import PAYLOADS, Payload
from shared.prepared import Prepared
from shared.redis_client import get_redis
from shared.settings import get_settings

log = logging.getLogger(__name__)
JOBS = Job.__table__
c = JOBS.c
QUEUED, RUNNING, CANCELLED = JobState.queued.value, JobState.running.value, JobState.cancelled.value
CANCEL_ERROR = {"code": "cancelled", "message": "cancelled by the user"}


class JobLimitExceeded(Exception):
    """The user already has MAX_ACTIVE_JOBS_PER_KIND jobs of this kind queued or running."""

    def __init__(self, kind: str, limit: int):
        super().__init__(f"at most {limit} {kind} jobs may be queued or running at once")
        self.kind = kind
        self.limit = limit


# Built once: the enqueue path runs them on every request, on the session's connection (no ORM).
# A user's job is inserted only while fewer than the limit are active: the count and the
# insert are one statement (INSERT ... SELECT ... WHERE count < limit; no row: refused).
_FIELDS = ("id", "kind", "user_id", "payload", "request_id", "session_id", "state", "progress", "attempts",
           "dispatched_at", "created_at", "updated_at")
_ACTIVE_JOBS = select(func.count()).select_from(JOBS).where(
    c.user_id == bindparam("user_id"), c.kind == bindparam("kind"), c.state.in_(ACTIVE_STATES)).scalar_subquery()
_INSERT_WITHIN_LIMIT = insert(JOBS).from_select(
    _FIELDS, select(*(bindparam(name, type_=c[name].type) for name in _FIELDS)).where(
        _ACTIVE_JOBS < bindparam("limit"))).execution_options(preserve_rowcount=True)  # psycopg: else -1
_INSERT = insert(JOBS)


@dataclass(frozen=True, slots=True)
class Created:
    """A job just written (not yet committed): what its creator sends and answers with."""

    id: str
    kind: str


def new_job(kind: str, user_id: str | None, payload: Payload, request_id: str | None = None,
            session_id: str | None = None) -> Created:
    """Create: insert a queued job in the current transaction (call inside `write_tx`), within
    the per-user limit. `session_id` is the sign-in session its event URLs are signed for."""
    if kind not in KIND_TASKS:
        raise ValueError(f"unknown job kind {kind!r}")
    if type(payload) is not PAYLOADS[kind]:
        raise TypeError(f"a {kind} job takes a {PAYLOADS[kind].__name__}, not {type(payload).__name__}")
    now = utcnow()
    values = {"id": new_id(), "kind": kind, "user_id": user_id, "payload": payload.model_dump(mode="json"),
              "request_id": request_id, "session_id": session_id, "state": QUEUED, "progress": 0.0,
              "attempts": 0, "dispatched_at": now, "created_at": now, "updated_at": now}
    conn = db.session.connection()
    if user_id is None:
        conn.execute(_INSERT, values)
    else:
        limit = get_settings().MAX_ACTIVE_JOBS_PER_KIND
        if conn.execute(_INSERT_WITHIN_LIMIT, {**values, "limit": limit}).rowcount != 1:
            raise JobLimitExceeded(kind, limit)
    return Created(values["id"], kind)


def dispatch(job: Created) -> bool:
    """Send a committed job to its queue; on failure leave it (`dispatched_at` empty) for the sweeper."""
    try:
        send(job.id, job.kind)
        return True
    except Exception:  # broker down: the record is durable, the sweeper sends it later
        log.warning("dispatch of job %s failed; the sweeper will send it", job.id, exc_info=True)
        _undispatched(job.id)
        return False


def _undispatched(job_id: str) -> None:
    try:
        with write_tx():
            db.session.execute(update(JOBS).where(c.id == job_id, c.state == QUEUED).values(dispatched_at=None))
    except Exception:  # noqa: BLE001 - the REDISPATCH_QUEUED_AFTER rule still finds it
        log.exception("could not mark job %s undispatched", job_id)


def redispatch(job_id: str, kind: str, *conditions) -> bool:
    """The sweeper's: back to queued and sent now, if `conditions` still hold (one sweeper wins)."""
    with write_tx():
        won = db.session.execute(update(JOBS).where(c.id == job_id, *conditions).values(
            state=QUEUED, lease_owner=None, lease_expires_at=None, dispatched_at=utcnow())).rowcount
    if not won:
        return False
    try:
        send(job_id, kind)
        return True
    except Exception:  # noqa: BLE001 - broker down: the next sweep tries again
        _undispatched(job_id)
        return False


def _lease_end(now: datetime) -> datetime:
    return now + timedelta(seconds=get_settings().JOB_LEASE_SECONDS)


# The hot statements of every job, built once; a call binds only its values.
_NOW = bindparam("now", type_=c.updated_at.type)
_CLAIM = Prepared(update(JOBS).where(c.id == bindparam("job_id"), c.state == QUEUED)
                  .values(state=RUNNING, lease_owner=bindparam("owner"), attempts=c.attempts + 1,
                          lease_expires_at=bindparam("lease_end", type_=c.lease_expires_at.type),
                          started_at=func.coalesce(c.started_at, _NOW), updated_at=_NOW)
                  .returning(c.kind, c.user_id, c.payload, c.attempts, c.request_id))
_HELD = (c.id == bindparam("job_id"), c.lease_owner == bindparam("owner"), c.state == RUNNING)
_ENDED = {"finished_at": _NOW, "updated_at": _NOW, "lease_expires_at": None}
_REWRITTEN = {"payload": bindparam("b_payload", type_=c.payload.type)}  # the handler rewrote its input (rare)
_SUCCEED_VALUES = {"state": JobState.succeeded.value, "progress": 1.0, "error": None,
                   "result": bindparam("b_result", type_=c.result.type), **_ENDED}
_FAIL_VALUES = {"state": JobState.failed.value, "error": bindparam("b_error", type_=c.error.type), **_ENDED}
_SUCCEED = tuple(Prepared(update(JOBS).where(*_HELD).values(**_SUCCEED_VALUES, **extra)) for extra in ({}, _REWRITTEN))
_FAIL = tuple(Prepared(update(JOBS).where(*_HELD).values(**_FAIL_VALUES, **extra)) for extra in ({}, _REWRITTEN))


def _end_read() -> None:
    """End the session's open transaction, if any (an empty commit still costs ~0.1 ms)."""
    session = db.session()
    if session.in_transaction():
        session.commit()


def claim(job_id: str) -> Claimed | None:
    """Take the job: a queued one in one UPDATE ... RETURNING; a running one only if its holder is gone."""
    now, owner = utcnow(), this_process()
    _end_read()  # the claim is a transaction of its own (on the driver's connection)
    _count, rows = _CLAIM.run({"job_id": job_id, "owner": owner, "now": now, "lease_end": _lease_end(now)})
    if rows:
        kind, user_id, payload, attempts, request_id = rows[0]
        return Claimed(job_id, kind, user_id, dict(payload or {}), attempts, request_id, owner)
    return _take_over(job_id)


def _take_over(job_id: str) -> Claimed | None:
    """A running job whose lease expired or whose holder (a process on this host) is gone."""
    row = db.session.execute(select(c.kind, c.user_id, c.payload, c.state, c.attempts, c.request_id, c.lease_owner,
                                    c.lease_expires_at, c.started_at).where(c.id == job_id)).first()
    db.session.commit()  # end the read before taking the write lock
    if row is None or row.state != RUNNING:
        return None  # ended, unknown, or queued again by the sweeper meanwhile (its message follows)
    now = utcnow()
    if row.lease_expires_at and row.lease_expires_at > now and not is_dead(row.lease_owner):
        return None  # another live worker holds it
    owner = this_process()
    with write_tx():
        won = db.session.execute(
            update(JOBS).where(c.id == job_id, c.state == RUNNING, c.attempts == row.attempts)
            .values(lease_owner=owner, lease_expires_at=_lease_end(now), attempts=row.attempts + 1,
                    started_at=row.started_at or now, updated_at=now)
        ).rowcount
    if not won:
        return None
    return Claimed(job_id, row.kind, row.user_id, dict(row.payload or {}), row.attempts + 1, row.request_id, owner)


def renew(job_ids: list[str], owner: str) -> set[str]:
    """Extend the leases `owner` holds on these jobs; returns those still running under it.

    A cancelled job's lease is extended too while its holder lives (it is applying the cancel);
    it is not in the answer, so the holder stops it.
    """
    held = [c.id.in_(job_ids), c.lease_owner == owner]
    with write_tx():
        db.session.execute(update(JOBS).where(*held, c.state.in_((RUNNING, CANCELLED)), c.lease_expires_at.is_not(None))
                           .values(lease_expires_at=_lease_end(utcnow())))
    running = set(db.session.execute(select(c.id).where(*held, c.state == RUNNING)).scalars())
    db.session.commit()
    return running


def progress(job_id: str, fraction: float) -> None:
    """Record how far a running job is (0..1); its worker publishes the `progress` event."""
    with write_tx():
        db.session.execute(update(JOBS).where(c.id == job_id, c.state == RUNNING).values(progress=fraction))


def _end(stmts: tuple[Prepared, Prepared], job_id: str, owner: str, payload: Payload | None, **values: Any) -> bool:
    """Run the final UPDATE (the second of `stmts` when the handler rewrote its input) in its own transaction."""
    if payload is not None:
        values["b_payload"] = payload.model_dump(mode="json")
    _end_read()
    count, _rows = stmts[payload is not None].run({"job_id": job_id, "owner": owner, "now": utcnow(), **values})
    return bool(count)


def _announce(job_id: str, state: str, result: dict | None, error: dict | None) -> None:
    name, data = final_event(state, result, error)
    publisher.post(job_id, name, data)  # not waited for: the record has it (shared/jobs/publisher.py)


def succeed(job_id: str, owner: str, result: dict, payload: Payload | None = None) -> bool:
    """Running -> succeeded (if `owner` still holds it), then the `done` event. False: no longer held."""
    if not _end(_SUCCEED, job_id, owner, payload, b_result=result):
        return False
    _announce(job_id, JobState.succeeded.value, result, None)
    return True


def fail(job_id: str, owner: str, error: dict, payload: Payload | None = None) -> bool:
    """Running -> failed with {code, message} (if `owner` still holds it), then the `error` event."""
    if not _end(_FAIL, job_id, owner, payload, b_error=error):
        return False
    _announce(job_id, JobState.failed.value, None, error)
    return True


def retry(job_id: str, owner: str, countdown: float) -> None:
    """Running -> queued, to run again in `countdown` seconds (Celery's retry sends the message)."""
    with write_tx():
        db.session.execute(
            update(JOBS).where(c.id == job_id, c.lease_owner == owner, c.state == RUNNING)
            .values(state=QUEUED, lease_owner=None, lease_expires_at=None,
                    dispatched_at=utcnow() + timedelta(seconds=countdown)))


def cancel(job_id: str) -> str | None:
    """Queued or running -> cancelled; then the flag its holder checks and the `cancelled` event.

    Returns the state it was cancelled from (None: it had already ended). A running job keeps
    its lease: its holder applies the cancel to its rows and settles it (`settle_cancel`).
    """
    now = utcnow()
    with write_tx():
        for state in ACTIVE_STATES:  # queued first: whether a worker holds the job decides who ends its rows
            if db.session.execute(update(JOBS).where(c.id == job_id, c.state == state).values(
                    state=CANCELLED, finished_at=now, updated_at=now, error=CANCEL_ERROR)).rowcount:
                break
        else:
            return None
    r = get_redis()
    stream.flag_cancel(r, job_id)
    _announce(job_id, CANCELLED, None, CANCEL_ERROR)
    return state


def settle_cancel(job_id: str) -> bool:
    """In the caller's transaction: end the lease of a job cancelled while it ran. True exactly once,
    for whoever then finalises its rows (its holder when it stops, or the sweeper for a dead one)."""
    return bool(db.session.execute(update(JOBS).where(c.id == job_id, c.state == CANCELLED,
                                                      c.lease_expires_at.is_not(None))
                                   .values(lease_owner=None, lease_expires_at=None)).rowcount)


def purge(before: datetime) -> int:
    """Delete the records of jobs that ended before `before`."""
    with write_tx():
        return db.session.execute(delete(JOBS).where(c.state.in_(TERMINAL_STATES), c.finished_at < before)).rowcount
