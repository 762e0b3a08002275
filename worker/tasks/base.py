"""The job lifecycle around every task: claim, lease heartbeat, events, finish, retry.

A task registered with `@job_task(name)` receives a `JobContext` and returns the job's
result. The wrapper:
- claims the job atomically (a queued job, or a running one whose lease expired or whose
  holder on this host is dead), so a job delivered twice runs once at a time;
- renews the lease every JOB_HEARTBEAT_SECONDS while the handler runs (LeaseKeeper); the
  beat's sweeper re-dispatches a job whose lease expired (a dead worker);
- writes the terminal state first, then publishes the terminal event;
- turns `Transient` into a Celery retry with exponential backoff and full jitter, and
  `JobFailed` (or anything unexpected) into a failed job with {code, message};
- gives every task its kind's time limits (`time_limits`): the soft one is a deadline the
  handler meets at its checks (`ctx.check_cancelled`, `ctx.token`) and, on a prefork pool, a
  signal wherever it is; the hard one stops it regardless (`JobTask.on_failure` records it).
  A job stopped either way ends `failed` with code `time_limit` once, and terminal: neither a
  redelivered message nor the sweeper runs it again.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from pydantic import ValidationError
from sqlalchemy import func, select, update

from shared import events
from shared.app import create_app
from shared.celery_config import route_for
from shared.database import db, utcnow, write_tx
from shared.logs import job_id_var, request_id_var
from shared.models import Job, JobState
from shared.payloads import Payload
from shared.payloads import parse as parse_payload
from shared.redis_client import get_redis
from shared.settings import get_settings
from worker.celery_app import celery

log = logging.getLogger(__name__)
HOST = socket.gethostname()
TOKEN_TTL_REFRESH = 5.0  # seconds between TTL refreshes of a stream while tokens flow
REDIS_OUTAGE_WAIT = 60.0  # seconds a streaming reply waits for Redis before it is retried later
INTERRUPT_EVERY = 0.2  # seconds between two checks of `JobContext.interruptible`


class JobFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Transient(Exception):
    """A failure worth retrying later (network, a 4xx from a server); `code` names it if retries run out."""

    def __init__(self, message: str, code: str = "retries_exhausted"):
        super().__init__(message)
        self.code = code


class Cancelled(Exception):
    """Raised inside a handler when the job was cancelled."""


class TimeLimitReached(JobFailed):
    """Raised at a check once the job's soft time limit has passed."""

    def __init__(self, seconds: float):
        super().__init__("time_limit", f"stopped after its time limit of {seconds:g} s")


# Each queue's time limit setting (the queue is the task name's prefix).
LIMIT_SETTINGS = {"mail": "MAIL_TIME_LIMIT", "files": "FILES_TIME_LIMIT", "tts": "TTS_TIME_LIMIT",
                  "llm": "CHAT_TIME_LIMIT", "default": "MAINTENANCE_TIME_LIMIT"}


def time_limits(task_name: str) -> dict[str, float]:
    """Celery's soft and hard time limits for a task, from its queue's setting."""
    s = get_settings()
    soft = getattr(s, LIMIT_SETTINGS[route_for(task_name)])
    return {"soft_time_limit": soft, "time_limit": soft + s.TIME_LIMIT_GRACE}


@dataclass
class JobContext:
    job_id: str
    kind: str
    user_id: str | None
    payload: Payload | None  # the kind's model (shared.payloads); None only for a job whose input is invalid
    attempt: int
    time_limit: float = float("inf")  # seconds from `started`
    started: float = field(default_factory=time.monotonic)
    lease_lost: threading.Event = field(default_factory=threading.Event)
    new_payload: Payload | None = None  # stored in place of the payload when the job ends

    ttl_refreshed_at: float = 0.0

    def emit(self, event: str, data: dict[str, Any] | None = None) -> str:
        self.ttl_refreshed_at = time.monotonic()
        return events.publish(get_redis(), self.job_id, event, data)

    def token(self, delta: str) -> None:
        """Stream one token; raises Cancelled when the job was cancelled (checked in the same round trip).

        If Redis is unreachable, the reply waits for it (up to REDIS_OUTAGE_WAIT seconds; a
        Redis restart takes a few) instead of failing: its clients reconnect with Last-Event-ID.
        Past that, the job is retried later, like any transient failure.
        """
        now = time.monotonic()
        refresh = now - self.ttl_refreshed_at > TOKEN_TTL_REFRESH
        if refresh:
            self.ttl_refreshed_at = now
        data = {"delta": delta, "t": round(time.time(), 4)}
        give_up = now + REDIS_OUTAGE_WAIT
        while True:
            try:
                cancelled = events.publish_token(get_redis(), self.job_id, data, refresh)
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() > give_up:
                    raise Transient(f"Redis unreachable while streaming: {exc}", code="redis_unavailable") from exc
                log.warning("job %s: Redis unreachable while streaming; waiting for it", self.job_id)
                time.sleep(0.5)
        if cancelled or self.lease_lost.is_set():
            raise Cancelled()
        self.check_deadline()

    def progress(self, fraction: float, **data: Any) -> None:
        fraction = max(0.0, min(1.0, fraction))
        with write_tx():
            db.session.execute(update(Job).where(Job.id == self.job_id).values(progress=fraction))
        self.emit("progress", {"progress": fraction, **data})

    def cancelled(self) -> bool:
        return self.lease_lost.is_set() or bool(get_redis().exists(events.cancel_key(self.job_id)))

    def check_cancelled(self) -> None:
        """Raises Cancelled when the job was cancelled, TimeLimitReached past its soft time limit."""
        if self.cancelled():
            raise Cancelled()
        self.check_deadline()

    def check_deadline(self) -> None:
        if time.monotonic() - self.started > self.time_limit:
            raise TimeLimitReached(self.time_limit)

    @contextmanager
    def interruptible(self):
        """Within the block, stop wherever the code is (a long parse between two checks) once the job
        is cancelled or taken over (its lease keeper saw it) or past its soft time limit.

        A timer signal checks every INTERRUPT_EVERY seconds, without I/O (a handler that used Redis
        could find its connection pool locked by the code it interrupted). Signals reach the main
        thread only: elsewhere (gevent, threads) the block runs with its own checks alone.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def check(_signum, _frame):
            if self.lease_lost.is_set():
                raise Cancelled()
            self.check_deadline()

        previous = signal.signal(signal.SIGALRM, check)
        signal.setitimer(signal.ITIMER_REAL, INTERRUPT_EVERY, INTERRUPT_EVERY)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _owner() -> str:
    return f"{HOST}:{os.getpid()}"


def _holder_is_dead(owner: str | None) -> bool:
    """True when the lease holder was a process on this host that no longer exists."""
    if not owner:
        return True
    host, _, pid = owner.rpartition(":")
    if host != HOST or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


JOBS = Job.__table__  # Core statements: the job lifecycle is the hot path of every task


@dataclass
class Claimed:
    id: str
    kind: str
    user_id: str | None
    payload: dict[str, Any]
    attempts: int
    request_id: str | None
    lease_owner: str


def claim(job_id: str) -> Claimed | None:
    """Take the job: a queued one in one UPDATE ... RETURNING; a running one only if its holder is gone."""
    s = get_settings()
    c = JOBS.c
    now, owner = utcnow(), _owner()
    with write_tx():
        taken = db.session.execute(
            update(JOBS).where(c.id == job_id, c.state == JobState.queued.value)
            .values(state=JobState.running.value, lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=s.JOB_LEASE_SECONDS), attempts=c.attempts + 1,
                    started_at=func.coalesce(c.started_at, now), updated_at=now)
            .returning(c.kind, c.user_id, c.payload, c.attempts, c.request_id)
        ).first()
    if taken is not None:
        return Claimed(id=job_id, kind=taken.kind, user_id=taken.user_id, payload=dict(taken.payload or {}),
                       attempts=taken.attempts, request_id=taken.request_id, lease_owner=owner)
    return _take_over(job_id)


def _take_over(job_id: str) -> Claimed | None:
    """A running job whose lease expired or whose holder (a process on this host) is gone."""
    s = get_settings()
    c = JOBS.c
    row = db.session.execute(select(c.kind, c.user_id, c.payload, c.state, c.attempts, c.request_id, c.lease_owner,
                                    c.lease_expires_at, c.started_at).where(c.id == job_id)).first()
    db.session.commit()  # end the read before taking the write lock
    if row is None or row.state != JobState.running.value:
        return None  # finished, cancelled, unknown, or queued again by the sweeper meanwhile (its message follows)
    now = utcnow()
    if row.lease_expires_at and row.lease_expires_at > now and not _holder_is_dead(row.lease_owner):
        return None  # another live worker holds it
    owner = _owner()
    with write_tx():
        won = db.session.execute(
            update(JOBS).where(c.id == job_id, c.state == row.state, c.attempts == row.attempts)
            .values(state=JobState.running.value, lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=s.JOB_LEASE_SECONDS),
                    attempts=row.attempts + 1, started_at=row.started_at or now, updated_at=now)
        ).rowcount
    if not won:
        return None
    return Claimed(id=job_id, kind=row.kind, user_id=row.user_id, payload=dict(row.payload or {}),
                   attempts=row.attempts + 1, request_id=row.request_id, lease_owner=owner)


class LeaseKeeper:
    """One thread per worker process renews the leases of all the jobs running in it.

    Every JOB_HEARTBEAT_SECONDS one UPDATE extends them all; a job whose row no longer says
    it runs here (cancelled, or taken over after a stall) gets its `lost` event set, and its
    handler stops at its next check. One batched write instead of a thread and a write per
    job keeps a gevent pool of hundreds of replies cheap.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.pid = None

    def add(self, job_id: str, lost: threading.Event) -> None:
        with self.lock:
            if self.pid != os.getpid():  # first use in this (possibly forked) process
                self.pid, self.jobs = os.getpid(), {}
                threading.Thread(target=self._loop, name="lease-keeper", daemon=True).start()
            self.jobs[job_id] = lost

    def remove(self, job_id: str) -> None:
        with self.lock:
            self.jobs.pop(job_id, None)

    def _loop(self) -> None:
        s = get_settings()
        app = create_app()  # a thread of its own: it enters the app context itself
        c = JOBS.c
        while True:
            time.sleep(s.JOB_HEARTBEAT_SECONDS)
            with self.lock:
                jobs = dict(self.jobs)
            if not jobs:
                continue
            try:
                with app.app_context():
                    try:
                        with write_tx():
                            db.session.execute(update(JOBS).where(
                                c.id.in_(list(jobs)), c.lease_owner == _owner(), c.state == JobState.running.value)
                                .values(lease_expires_at=utcnow() + timedelta(seconds=s.JOB_LEASE_SECONDS)))
                        held = set(db.session.execute(select(c.id).where(
                            c.id.in_(list(jobs)), c.lease_owner == _owner(),
                            c.state == JobState.running.value)).scalars())
                    finally:
                        db.session.remove()
                for job_id, lost in jobs.items():
                    if job_id not in held:
                        lost.set()
            except Exception:  # noqa: BLE001 - a missed beat is survivable; the lease is longer
                log.warning("lease renewal failed", exc_info=True)


leases = LeaseKeeper()


def _finish(job_id: str, owner: str, **values: Any) -> bool:
    now = utcnow()
    c = JOBS.c
    with write_tx():
        return bool(db.session.execute(
            update(JOBS).where(c.id == job_id, c.lease_owner == owner, c.state == JobState.running.value)
            .values(finished_at=now, updated_at=now, lease_expires_at=None, **values)
        ).rowcount)


def _requeue(job_id: str, owner: str, countdown: float) -> None:
    c = JOBS.c
    with write_tx():
        db.session.execute(
            update(JOBS).where(c.id == job_id, c.lease_owner == owner, c.state == JobState.running.value)
            .values(state=JobState.queued.value, lease_owner=None, lease_expires_at=None,
                    dispatched_at=utcnow() + timedelta(seconds=countdown))
        )


def job_task(name: str, max_retries: int = 5, on_fail: Callable[[JobContext, dict], None] | None = None,
             **options: Any) -> Callable:
    """Register `handler(ctx) -> result dict` as a Celery task that runs one job by id.

    `on_fail(ctx, error)` runs in the failing job's transaction, to mark what it was making; and
    for a cancelled job, with its error, when it stops or when its message arrives after the cancel.
    """

    def decorator(handler: Callable[[JobContext], dict[str, Any] | None]):
        @celery.task(name=name, bind=True, base=JobTask, max_retries=max_retries, **{**time_limits(name), **options})
        def run(self, job_id: str) -> None:
            # The job's ids are in every log line of its run, and in none after it: a pool
            # process (or a gevent greenlet's context) goes on to run other tasks, the sweeper's too.
            job_token, request_token = job_id_var.set(job_id), request_id_var.set("-")
            try:
                _run(self, handler, job_id, on_fail)  # inside the app context (AppTask)
            finally:
                job_id_var.reset(job_token)
                request_id_var.reset(request_token)

        run.on_fail = on_fail
        return run

    return decorator


def _run(task, handler, job_id: str, on_fail) -> None:
    job = claim(job_id)
    if job is None:
        log.info("job %s not claimed (finished, cancelled, or held by a live worker)", job_id)
        _mark_cancelled(job_id, on_fail)  # cancelled while it waited: what it was to make says so
        return
    if job.request_id:
        request_id_var.set(job.request_id)
    owner = job.lease_owner
    ctx = JobContext(job_id=job.id, kind=job.kind, user_id=job.user_id, payload=None, attempt=job.attempts,
                     time_limit=task.soft_time_limit or float("inf"))
    try:
        ctx.payload = parse_payload(job.kind, job.payload)
    except ValidationError as exc:  # written by another version, or by hand: nothing to run, nothing to mark
        _fail(ctx, owner, "bad_payload", f"the job's input is not valid ({exc.error_count()} errors)")
        return
    if job.attempts > 1:
        ctx.emit("restarted", {"attempt": job.attempts})
    leases.add(job.id, ctx.lease_lost)
    try:
        result = handler(ctx)
    except Cancelled:
        log.info("job %s stopped: cancelled", job_id)
        _mark_cancelled(job_id, on_fail)
        return
    except Transient as exc:
        leases.remove(job_id)
        if task.request.retries >= task.max_retries:
            _fail(ctx, owner, exc.code, f"gave up after {task.max_retries} retries: {exc}", on_fail)
            return
        countdown = get_exponential_backoff_interval(2, task.request.retries + 1, 600, full_jitter=True)
        countdown = max(1.0, float(countdown))
        _requeue(job_id, owner, countdown)
        ctx.emit("progress", {"retrying_in": countdown, "reason": str(exc)[:200]})
        raise task.retry(countdown=countdown, exc=exc) from exc
    except JobFailed as exc:
        _fail(ctx, owner, exc.code, exc.message, on_fail)
        return
    except SoftTimeLimitExceeded:  # prefork: the soft limit's signal, wherever the handler was
        _fail(ctx, owner, "time_limit", TimeLimitReached(ctx.time_limit).message, on_fail)
        return
    except Exception as exc:  # noqa: BLE001 - recorded on the job, logged with its stack
        log.exception("job %s crashed", job_id)
        _fail(ctx, owner, "internal_error", f"{type(exc).__name__}: the job failed unexpectedly", on_fail)
        return
    finally:
        leases.remove(job_id)
    values: dict[str, Any] = {"state": JobState.succeeded.value, "result": result or {}, "progress": 1.0,
                              "error": None}
    if ctx.new_payload is not None:
        values["payload"] = ctx.new_payload.model_dump(mode="json")
    if _finish(job_id, owner, **values):
        ctx.emit("done", {"state": JobState.succeeded.value, "result": result or {}})
        log.info("job %s (%s) succeeded on attempt %d", job_id, ctx.kind, ctx.attempt)


def _fail(ctx: JobContext, owner: str, code: str, message: str, on_fail=None) -> None:
    error = {"code": code, "message": message}
    extra = {"payload": ctx.new_payload.model_dump(mode="json")} if ctx.new_payload is not None else {}
    if on_fail is not None and ctx.payload is not None:
        with write_tx():
            on_fail(ctx, error)
    if _finish(ctx.job_id, owner, state=JobState.failed.value, error=error, **extra):
        ctx.emit("error", {"state": JobState.failed.value, "error": error})
        log.warning("job %s (%s) failed: %s: %s", ctx.job_id, ctx.kind, code, message)


def _valid_payload(kind: str, data: dict | None) -> Payload | None:
    """The job's typed payload, or None when the stored one is not valid."""
    try:
        return parse_payload(kind, data)
    except ValidationError:
        return None


def _mark_cancelled(job_id: str, on_fail) -> None:
    """Run `on_fail` with the job's error if it was cancelled (not when another worker took it over)."""
    if on_fail is None:
        return
    c = JOBS.c
    row = db.session.execute(select(c.kind, c.user_id, c.payload, c.attempts, c.error).where(
        c.id == job_id, c.state == JobState.cancelled.value)).first()
    db.session.commit()
    payload = _valid_payload(row.kind, row.payload) if row is not None else None
    if payload is not None:
        ctx = JobContext(job_id=job_id, kind=row.kind, user_id=row.user_id, payload=payload, attempt=row.attempts)
        with write_tx():
            on_fail(ctx, row.error or {"code": "cancelled", "message": "cancelled"})


class JobTask(celery.Task):
    """The base of job tasks: a job stopped by its hard time limit is recorded as failed.

    Celery calls `on_failure` with TimeLimitExceeded where the pool enforces the hard limit: in
    the prefork parent just before it kills the child, in the gevent greenlet that timed out;
    and with SoftTimeLimitExceeded when the soft limit's signal came after the handler returned.
    The failure is written only if the job still runs (the child may have finished first),
    and the message is acked (task_acks_on_timeout), so nothing runs the job again.
    """

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        if not (isinstance(exc, (TimeLimitExceeded, SoftTimeLimitExceeded)) and args):
            return
        try:  # never raise here: the prefork pool kills the stuck child only after this returns
            with create_app().app_context():  # called outside the task's run (AppTask.__call__)
                try:
                    _fail_stopped(self, str(args[0]))
                finally:
                    db.session.remove()
        except Exception:  # noqa: BLE001 - the lease then expires and the sweeper runs it again
            log.exception("could not record job %s as stopped by its time limit", args[0])


def _fail_stopped(task, job_id: str) -> None:
    c = JOBS.c
    row = db.session.execute(select(c.kind, c.user_id, c.payload, c.attempts, c.lease_owner).where(
        c.id == job_id, c.state == JobState.running.value)).first()
    db.session.commit()
    if row is None:
        return
    ctx = JobContext(job_id=job_id, kind=row.kind, user_id=row.user_id, payload=_valid_payload(row.kind, row.payload),
                     attempt=row.attempts, time_limit=task.soft_time_limit or task.time_limit)
    message = f"stopped by its hard time limit of {task.time_limit:g} s"
    _fail(ctx, row.lease_owner, "time_limit", message, task.on_fail)
