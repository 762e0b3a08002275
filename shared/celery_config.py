"""Celery configuration shared by the worker and by the API, which only sends tasks by name.

One queue per area; routing by the task name's prefix (`mail.send` goes to `mail`).
Nothing is lost: late acks, requeue when a pool child dies, prefetch 1. A task stopped by its
hard time limit is acked, not requeued: its job is recorded failed (worker/tasks/base.py).
"""
from __future__ import annotations

from celery import Celery
from kombu import Queue

from shared.settings import get_settings

QUEUES = ("default", "mail", "files", "llm", "tts")


def route_for(task_name: str) -> str:
    """Return the queue of a task name: its prefix when that is a queue, else "default"."""
    area = task_name.split(".", 1)[0]
    return area if area in QUEUES else "default"


def _router(name, args, kwargs, options, task=None, **kw):
    return {"queue": route_for(name)}


def make_celery(main: str, task_cls: type | None = None) -> Celery:
    """A Celery app with the shared configuration (the worker passes its task base class)."""
    s = get_settings()
    app = Celery(main, task_cls=task_cls) if task_cls else Celery(main)
    app.conf.update(
        broker_url=s.REDIS_URL,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(q, routing_key=q) for q in QUEUES],
        task_default_queue="default",
        task_routes=(_router,),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_acks_on_timeout=True,  # a hard time limit's kill is not a lost worker: no redelivery
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options={
            "visibility_timeout": s.BROKER_VISIBILITY_TIMEOUT,
            "socket_connect_timeout": s.REDIS_SOCKET_TIMEOUT,
            "socket_timeout": 5,
            "max_connections": 1000,  # kombu's default of 10 starves a gevent pool of 200 (failed acks)
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=s.REDIS_SOCKET_TIMEOUT,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        timezone="UTC",
    )
    return app
