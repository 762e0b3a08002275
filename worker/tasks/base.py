"""The task wrapper that runs one job through its lifecycle (shared.jobs.lifecycle): claim,
lease, the handler, then succeed, fail, retry or settle a cancel.

A task registered with `@job_task(name)` receives a `JobContext` and returns the job's
result. The wrapper:
- claims the job atomically (a queued job, or a running one whose lease expired or whose
  holder on this host is dead), so a job delivered twice runs once at a time;
- renews the lease every JOB_HEARTBEAT_SECONDS while the handler runs (LeaseKeeper); the
  beat's sweeper re-dispatches a job whose lease expired (a dead worker);
- ends the job through shared.jobs (the terminal state first, then its event);
- applies a cancel to what the job was making (`on_fail`), exactly once: here when the
  handler stops, or in the sweeper when the holder died (`settle_cancelled`);
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
from collections.abc import Callable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from pydantic import ValidationError
from sqlalchemy import select

from shared import jobs
from shared.app import create_app
from shared.celery_config import route_for
from shared.database import db, write_tx
from shared.jobs.lifecycle import JOBS
from shared.logs import job_id_var, request_id_var
from shared.models import JobState
from shared.payloads import Payload
from shared.payloads import parse as parse_payload
from shared.settings import get_settings
from worker.celery_app import celery
from worker.tasks.context import Cancelled, JobContext, JobFailed, TimeLimitReached, Transient
from worker.tasks.leases import leases

log = logging.getLogger(__name__)


# Each queue's time limit setting (the queue is the task name's prefix).
LIMIT_SETTINGS = {"mail": "MAIL_TIME_LIMIT", "files": "FILES_TIME_LIMIT", "tts": "TTS_TIME_LIMIT",
                  "llm": "CHAT_TIME_LIMIT", "default": "MAINTENANCE_TIME_LIMIT"}


def time_limits(task_name: str) -> dict[str, float]:
    """Celery's soft and hard time limits for a task, from its queue's setting."""
    s = get_settings()
    soft = getattr(s, LIMIT_SETTINGS[route_for(task_name)])
    return {"soft_time_limit": soft, "time_limit": soft + s.TIME_LIMIT_GRACE}



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
    job = jobs.claim(job_id)
    if job is None:
        log.info("job %s not claimed (ended, cancelled, or held by a live worker)", job_id)
        settle_cancelled(job_id, on_fail)  # cancelled while a dead holder ran it: its rows say so
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
        settle_cancelled(job_id, on_fail)
        return
    except Transient as exc:
        leases.remove(job_id)
        if task.request.retries >= task.max_retries:
            _fail(ctx, owner, exc.code, f"gave up after {task.max_retries} retries: {exc}", on_fail)
            return
        countdown = get_exponential_backoff_interval(2, task.request.retries + 1, 600, full_jitter=True)
        countdown = max(1.0, float(countdown))
        jobs.retry(job_id, owner, countdown)
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
    if jobs.succeed(job_id, owner, result or {}, ctx.new_payload):
        log.info("job %s (%s) succeeded on attempt %d", job_id, ctx.kind, ctx.attempt)


def _fail(ctx: JobContext, owner: str, code: str, message: str, on_fail=None) -> None:
    error = {"code": code, "message": message}
    if on_fail is not None and ctx.payload is not None:
        with write_tx():
            on_fail(ctx, error)
    if jobs.fail(ctx.job_id, owner, error, ctx.new_payload):
        log.warning("job %s (%s) failed: %s: %s", ctx.job_id, ctx.kind, code, message)


def _valid_payload(kind: str, data: dict | None) -> Payload | None:
    """The job's typed payload, or None when the stored one is not valid."""
    try:
        return parse_payload(kind, data)
    except ValidationError:
        return None


def settle_cancelled(job_id: str, on_fail) -> None:
    """Apply a cancel that came while the job ran: end its lease and, exactly once (whoever wins
    `jobs.settle_cancel`), run `on_fail` with its error, in the same transaction."""
    c = JOBS.c
    row = db.session.execute(select(c.kind, c.user_id, c.payload, c.attempts, c.error).where(
        c.id == job_id, c.state == JobState.cancelled.value)).first()
    db.session.commit()
    if row is None:
        return
    payload = _valid_payload(row.kind, row.payload)
    with write_tx():
        if jobs.settle_cancel(job_id) and on_fail is not None and payload is not None:
            ctx = JobContext(job_id=job_id, kind=row.kind, user_id=row.user_id, payload=payload, attempt=row.attempts)
            on_fail(ctx, row.error or jobs.CANCEL_ERROR)


class JobTask(celery.Task):
    """The base of job tasks: a job stopped by its hard time limit is recorded as failed.

    Celery calls `on_failure` with TimeLimitExceeded where the pool enforces the hard limit: in
    the prefork parent just before it kills the child, in the gevent greenlet that timed out;
    and with SoftTimeLimitExceeded when the soft limit's signal came after the handler returned.
    The failure is written only if the job still runs (the child may have finished first),
    and the message is acked (task_acks_on_timeout), so nothing runs the job again.
    """

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Record a job stopped by a time limit as failed, if it still runs; other failures are handled in the task."""
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
