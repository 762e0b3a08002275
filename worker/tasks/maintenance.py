"""Beat tasks on the default queue: the job sweeper and retention.

The sweeper re-dispatches
(a) running jobs whose lease expired, i.e. whose worker died;
(b) queued jobs that never reached Redis (`dispatched_at` empty);
(c) queued jobs sent more than REQUEUE_LOST_AFTER ago whose message no longer waits in its
    queue: taken by a consumer that died before claiming the job (shared.broker says why that
    is the only way it happens); a retry waiting for its ETA is not asked about before then;
(d) as a last resort, any queued job sent more than REDISPATCH_QUEUED_AFTER ago.
Each re-dispatch is a conditional update first (shared.jobs.redispatch), so two sweepers never
send one job twice. A job stopped by its time limit is `failed` (terminal): none of these rules
sends it again. It also settles (e) jobs cancelled while they ran whose holder died before it
applied the cancel: what they were making is marked, once.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import or_, select

from shared import broker, jobs
from shared.database import db, utcnow
from shared.models import Job, JobState
from shared.redis_client import get_redis
from shared.settings import get_settings
from worker.celery_app import celery
from worker.tasks.base import job_task, settle_cancelled, time_limits
from worker.tasks.context import JobContext

log = logging.getLogger(__name__)
BATCH = 200
LOST_BATCH = 1000  # queued jobs looked up in the broker per sweep


@celery.task(name="default.sweep_jobs", ignore_result=True, **time_limits("default.sweep_jobs"))
def sweep_jobs() -> int:
    """One sweep (see the module's docstring); returns how many jobs it sent again."""
    s = get_settings()
    sent = 0
    now = utcnow()
    stale = now - timedelta(seconds=s.REDISPATCH_QUEUED_AFTER)
    candidates = db.session.execute(
        select(Job.id, Job.kind, Job.state).where(or_(
            (Job.state == JobState.running.value) & (Job.lease_expires_at < now),
            (Job.state == JobState.queued.value) & (Job.dispatched_at.is_(None) | (Job.dispatched_at < stale)),
        )).limit(BATCH)
    ).all()
    db.session.commit()
    for job_id, kind, state in candidates:
        cond = [Job.state == state]
        if state == JobState.running.value:
            cond.append(Job.lease_expires_at < now)
        else:
            cond.append(Job.dispatched_at.is_(None) | (Job.dispatched_at < stale))
        sent += _redispatch(job_id, kind, state, cond)
    sent += _resend_lost(s, now, stale)
    _settle_orphaned_cancels(now)
    return sent


def _redispatch(job_id: str, kind: str, state: str, cond: list) -> int:
    if not jobs.redispatch(job_id, kind, *cond):
        return 0
    log.warning("re-dispatched job %s (%s, was %s)", job_id, kind, state)
    return 1


def _settle_orphaned_cancels(now) -> None:
    """Jobs cancelled while they ran whose holder stopped renewing its lease (it died): apply the cancel."""
    rows = db.session.execute(select(Job.id, Job.kind).where(
        Job.state == JobState.cancelled.value, Job.lease_expires_at < now).limit(BATCH)).all()
    db.session.commit()
    if rows:
        celery.loader.import_default_modules()  # every task's on_fail (a worker has them; a shell may not)
    for job_id, kind in rows:
        task = celery.tasks.get(jobs.KIND_TASKS.get(kind, ""))
        settle_cancelled(job_id, getattr(task, "on_fail", None))
        log.warning("settled job %s (%s), cancelled while its dead holder ran it", job_id, kind)


def _resend_lost(s, now, stale) -> int:
    """Send again the queued jobs sent more than REQUEUE_LOST_AFTER ago that no consumer will run.

    Looked up oldest first; the broker is read only when there are such jobs (a backlog, or a
    lost message), in one atomic script over the kinds' queue lists.
    """
    lost_cutoff = now - timedelta(seconds=s.REQUEUE_LOST_AFTER)
    rows = db.session.execute(
        select(Job.id, Job.kind).where(
            Job.state == JobState.queued.value, Job.dispatched_at < lost_cutoff, Job.dispatched_at >= stale)
        .order_by(Job.dispatched_at).limit(LOST_BATCH)
    ).all()
    db.session.commit()  # hold no read transaction while looking in the broker
    tasks = {job_id: jobs.KIND_TASKS[kind] for job_id, kind in rows if kind in jobs.KIND_TASKS}
    if not tasks:
        return 0
    try:
        missing = broker.taken_messages(get_redis(), tasks)
    except Exception:  # noqa: BLE001 - broker down: nothing can be sent now; next sweep looks again
        log.warning("could not look for lost messages", exc_info=True)
        return 0
    sent = 0
    for job_id, kind in rows:
        if job_id in missing:
            # Still queued and not sent again since (by another sweeper, or a retry's requeue).
            cond = [Job.state == JobState.queued.value, Job.dispatched_at < lost_cutoff]
            if _redispatch(job_id, kind, "queued, its message lost", cond):
                sent += 1
    return sent


@celery.task(name="default.purge_old_jobs", ignore_result=True, **time_limits("default.purge_old_jobs"))
def purge_old_jobs() -> int:
    """Delete the records of jobs that ended more than JOB_RETENTION_DAYS ago."""
    return jobs.purge(utcnow() - timedelta(days=get_settings().JOB_RETENTION_DAYS))


@job_task("default.noop", max_retries=0)
def noop(ctx: JobContext) -> dict:
    """A job that does nothing: it measures the job lifecycle itself (claim, lease, events, finish)."""
    return {}
