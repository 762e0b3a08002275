"""The SQLite write lock is waited for, never answered with "database is locked".

Under gevent the busy timeout is 0 and `write_tx` (and the lifecycle's Prepared statements)
wait for the lock in Python. The BEGIN runs on the driver's connection, whose error is the
driver's own (sqlite3.OperationalError), not SQLAlchemy's wrapper: both must be waited on.
"""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import insert, select

from shared.database import db, utcnow, write_tx
from shared.jobs.lifecycle import JOBS
from shared.models.user import new_id
from tests.conftest import USING_POSTGRES

pytestmark = pytest.mark.skipif(
    USING_POSTGRES, reason="needs SQLite: this run uses PostgreSQL, which has no database-wide write lock")


def _hold_write_lock(path: str, seconds: float, held: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    other.execute("COMMIT")
    other.close()


def test_a_write_waits_for_another_connections_lock_with_no_busy_timeout(app):
    with app.app_context():
        path = db.engine.url.database
        session = db.session()
        session.connection().connection.driver_connection.execute("PRAGMA busy_timeout=0")  # as under gevent
        session.commit()
        held = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(path, 0.3, held))
        holder.start()
        held.wait(5)
        started = time.monotonic()
        job_id = new_id()
        try:
            with write_tx():
                db.session.execute(insert(JOBS).values(id=job_id, kind="noop", state="queued", progress=0.0,
                                                       payload={}, attempts=0, created_at=utcnow(),
                                                       updated_at=utcnow()))
        finally:
            holder.join()
            db.session.connection().connection.driver_connection.execute("PRAGMA busy_timeout=15000")
            db.session.commit()
        waited = time.monotonic() - started
        assert waited >= 0.2, f"the write did not wait for the lock ({waited:.3f} s)"
        assert db.session.execute(select(JOBS.c.state).where(JOBS.c.id == job_id)).scalar_one() == "queued"
        db.session.remove()
