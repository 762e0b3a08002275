"""Job kinds, the task each runs as, and sending a task message (the job id only)."""
from __future__ import annotations

from shared.celery_config import make_celery

# kind -> task name; the task name's prefix is its queue (see shared.celery_config).
KIND_TASKS: dict[str, str] = {
    "mail": "mail.send",
    "chat": "llm.chat_reply",
    "file": "files.process",
    "tts": "tts.synthesize",
    "speech": "tts.speak_reply",
    "noop": "default.noop",  # a probe: the job lifecycle with no work (benchmarks, smoke checks)
}

_celery = None


def celery_client():
    """The process's Celery app for sending (API and worker both send by task name)."""
    global _celery
    if _celery is None:
        _celery = make_celery("mentor-client")
    return _celery


def send(job_id: str, kind: str) -> None:
    """Publish the task message (the job id only: the worker reads the rest, request id too, from
    the record). Raises when the broker cannot be reached."""
    app = celery_client()
    # A producer from the pool, passed in: the same message, cheaper than letting send_task
    # acquire one itself (python -m bench.publish measures both).
    with app.producer_pool.acquire(block=True) as producer:
        app.send_task(KIND_TASKS[kind], args=[job_id], task_id=job_id, producer=producer)
