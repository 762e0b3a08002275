"""The Celery app: shared configuration, the task modules, the beat schedule, process hooks.

Start a worker with `celery -A worker.celery_app worker -Q default,mail,...`; the beat with
`celery -A worker.celery_app beat`.
"""
from __future__ import annotations

import logging
import os
import socket
import threading

from celery import Task, signals

from shared import speech, workers
from shared.app import create_app
from shared.celery_config import make_celery
from shared.database import db
from shared.jobs.publisher import publisher
from shared.logs import configure_logging, job_id_var, request_id_var
from shared.redis_client import get_redis, reset_redis
from shared.settings import get_settings


class AppTask(Task):
    """Every task runs inside the worker app's context and leaves no database session behind
    (Flask's Celery pattern: docs/patterns/celery.rst)."""

    def __call__(self, *args, **kwargs):
        """Run the task in the worker app's context, removing the database session after."""
        with create_app().app_context():
            try:
                return self.run(*args, **kwargs)
            finally:
                db.session.remove()


settings = get_settings()
celery = make_celery("mentor-worker", task_cls=AppTask)
celery.conf.include = ["worker.tasks.mail", "worker.tasks.chat", "worker.tasks.files", "worker.tasks.speech",
                       "worker.tasks.maintenance"]
celery.conf.beat_schedule = {
    "sweep-jobs": {"task": "default.sweep_jobs", "schedule": settings.SWEEP_INTERVAL_SECONDS,
                   "options": {"expires": settings.SWEEP_INTERVAL_SECONDS * 2}},
    "purge-old-jobs": {"task": "default.purge_old_jobs", "schedule": 3600.0, "options": {"expires": 1800}},
}
app = celery  # `celery -A worker.celery_app` finds `app` or `celery`

_presence_stop = threading.Event()


@signals.setup_logging.connect
def _logging(**_):
    configure_logging("worker")
    # The sweeper runs every few seconds: keep its receipts out of the log (Flower shows every task).
    for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


@signals.task_prerun.connect
def _fresh_log_context(**_):
    """Every task starts with no request or job id in its log lines (job tasks then set theirs):
    a pool process runs one task after another, and the beat's tasks carry no job."""
    request_id_var.set("-")
    job_id_var.set("-")


@signals.worker_process_init.connect
def _after_fork(**_):
    """A pool child must not share the parent's sockets."""
    reset_redis()
    with create_app().app_context():
        db.engine.dispose(close=False)


@signals.worker_ready.connect
def _announce(sender, **_):
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    name = f"{socket.gethostname()}:{os.getpid()}:{sender.hostname}"

    def loop():
        while not _presence_stop.is_set():
            try:
                workers.beat(get_redis(), name, queues)
                if "tts" in queues:
                    _publish_voices()
            except Exception:  # noqa: BLE001 - Redis blinked; beat again next round
                pass
            _presence_stop.wait(5)
        try:
            workers.gone(get_redis(), name, queues)
        except Exception:  # noqa: BLE001
            pass

    threading.Thread(target=loop, name="presence", daemon=True).start()


def _publish_voices() -> None:
    """Tell the API which voices this worker's engine has (it never runs an engine itself)."""
    from worker.providers.speech import get_engine
    engine = get_engine()
    voices = engine.voices()
    default = settings.TTS_VOICE or (voices[0]["id"] if voices else None)
    speech.publish_voices(get_redis(), engine.name, voices, default)


@signals.worker_process_shutdown.connect
def _flush_events(**_):
    publisher.flush()  # a pool child's terminal events still pending


@signals.worker_shutdown.connect
def _leave(**_):
    _presence_stop.set()
    publisher.flush()
