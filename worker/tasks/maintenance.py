"""Beat tasks on the default queue: the job sweeper and retention.

The sweeper re-dispatches (a) running jobs whose lease expired, i.e. whose worker died,
and (b) queued jobs that never reached Redis or sat unclaimed past REDISPATCH_QUEUED_AFTER.
Each re-dispatch is a conditional update first, so two sweepers never send one job twice.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, or_, select, update

from shared import jobs
from shared.database import db, utcnow, write_tx
from shared.models import Job, JobState
from shared.models.job import TERMINAL_STATES
from shared.settings import get_settings
from worker.app_context import flask_app
from worker.celery_app import celery
from worker.tasks.base import JobContext, job_task

log = logging.getLogger(__name__)
BATCH = 200


@celery.task(name="default.sweep_jobs", ignore_result=True)
def sweep_jobs() -> int:
    s = get_settings()
    sent = 0
    with flask_app().app_context():
        try:
            now = utcnow()
            stale = now - timedelta(seconds=s.REDISPATCH_QUEUED_AFTER)
            candidates = db.session.execute(
                select(Job.id, Job.kind, Job.state, Job.request_id).where(or_(
                    (Job.state == JobState.running.value) & (Job.lease_expires_at < now),
                    (Job.state == JobState.queued.value) & (Job.dispatched_at.is_(None) | (Job.dispatched_at < stale)),
                )).limit(BATCH)
            ).all()
            db.session.commit()
            for job_id, kind, state, request_id in candidates:
                cond = [Job.id == job_id, Job.state == state]
                if state == JobState.running.value:
                    cond.append(Job.lease_expires_at < now)
                else:
                    cond.append(Job.dispatched_at.is_(None) | (Job.dispatched_at < stale))
                with write_tx():
                    won = db.session.execute(update(Job).where(*cond).values(
                        state=JobState.queued.value, lease_owner=None, lease_expires_at=None,
                        dispatched_at=utcnow())).rowcount
                if not won:
                    continue
                try:
                    jobs.send(job_id, kind, request_id)
                    sent += 1
                    log.warning("re-dispatched job %s (%s, was %s)", job_id, kind, state)
                except Exception:  # noqa: BLE001 - broker down: next sweep tries again
                    with write_tx():
                        db.session.execute(update(Job).where(Job.id == job_id).values(dispatched_at=None))
        finally:
            db.session.remove()
    return sent


@celery.task(name="default.purge_old_jobs", ignore_result=True)
def purge_old_jobs() -> int:
    cutoff = utcnow() - timedelta(days=get_settings().JOB_RETENTION_DAYS)
    with flask_app().app_context():
        try:
            with write_tx():
                n = db.session.execute(
                    delete(Job).where(Job.state.in_(TERMINAL_STATES), Job.finished_at < cutoff)).rowcount
            return n
        finally:
            db.session.remove()


@job_task("default.noop", max_retries=0)
def noop(ctx: JobContext) -> dict:
    """A job that does nothing: it measures the job lifecycle itself (claim, lease, events, finish)."""
    return {}
