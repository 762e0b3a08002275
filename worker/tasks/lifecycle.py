"""The job record's lifecycle statements: claim (or take over a dead holder's job), lease
renewal (one LeaseKeeper thread per process), finish and requeue. Core statements: this is the
hot path of every task.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from shared.app import create_app
from shared.database import db, utcnow, write_tx
from shared.models import Job, JobState
from shared.settings import get_settings

log = logging.getLogger(__name__)
HOST = socket.gethostname()


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


def finish(job_id: str, owner: str, **values: Any) -> bool:
    now = utcnow()
    c = JOBS.c
    with write_tx():
        return bool(db.session.execute(
            update(JOBS).where(c.id == job_id, c.lease_owner == owner, c.state == JobState.running.value)
            .values(finished_at=now, updated_at=now, lease_expires_at=None, **values)
        ).rowcount)


def requeue(job_id: str, owner: str, countdown: float) -> None:
    c = JOBS.c
    with write_tx():
        db.session.execute(
            update(JOBS).where(c.id == job_id, c.lease_owner == owner, c.state == JobState.running.value)
            .values(state=JobState.queued.value, lease_owner=None, lease_expires_at=None,
                    dispatched_at=utcnow() + timedelta(seconds=countdown))
        )
