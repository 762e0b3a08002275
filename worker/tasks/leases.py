"""The lease keeper: one thread per worker process renews the leases of all the jobs running in it."""
from __future__ import annotations

import logging
import os
import threading
import time

from shared import jobs
from shared.app import create_app
from shared.database import db
from shared.jobs.holders import this_process
from shared.settings import get_settings

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Every JOB_HEARTBEAT_SECONDS one UPDATE (shared.jobs.renew) extends the leases of this
    process's jobs; a job whose row no longer says it runs here (cancelled, or taken over after a
    stall) gets its `lost` event set, and its handler stops at its next check. One batched write
    instead of a thread and a write per job keeps a gevent pool of hundreds of replies cheap.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.pid = None

    def add(self, job_id: str, lost: threading.Event) -> None:
        """Keep this job's lease from now on; `lost` is set once the job no longer runs here."""
        with self.lock:
            if self.pid != os.getpid():  # first use in this (possibly forked) process
                self.pid, self.jobs = os.getpid(), {}
                threading.Thread(target=self._loop, name="lease-keeper", daemon=True).start()
            self.jobs[job_id] = lost

    def remove(self, job_id: str) -> None:
        """Stop renewing this job's lease (it ended here)."""
        with self.lock:
            self.jobs.pop(job_id, None)

    def _loop(self) -> None:
        s = get_settings()
        app = create_app()  # a thread of its own: it enters the app context itself
        while True:
            time.sleep(s.JOB_HEARTBEAT_SECONDS)
            with self.lock:
                held = dict(self.jobs)
            if not held:
                continue
            try:
                with app.app_context():
                    try:
                        running = jobs.renew(list(held), this_process())
                    finally:
                        db.session.remove()
                for job_id, lost in held.items():
                    if job_id not in running:
                        lost.set()
            except Exception:  # noqa: BLE001 - a missed beat is survivable; the lease is longer
                log.warning("lease renewal failed", exc_info=True)


leases = LeaseKeeper()
