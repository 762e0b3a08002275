"""Job kinds, the task each runs as, and sending a task message (the job id only)."""
from __future__ import annotations

import os
import socket
import uuid

from shared.celery_config import make_celery, route_for

# kind -> task name; the task name's prefix is its queue (see shared.celery_config).
KIND_TASKS: dict[str, str] = {
    "mail": "mail.send",
    "chat": "llm.chat_reply",
    "file": "files.process",
    "tts": "tts.synthesize",
    "speech": "tts.speak_reply",
    "noop": "default.noop",  # a probe: the job lifecycle with no work (benchmarks, smoke checks)
}

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_REPLY_TO = str(uuid.uuid4())  # what Celery's send_task sets: an id for replies, unused (no results)
_HOST = socket.gethostname()
_celery = None


def celery_client():
    """The process's Celery app for sending (API and worker both send by task name)."""
    global _celery
    if _celery is None:
        _celery = make_celery("mentor-client")
    return _celery


def task_message(job_id: str, kind: str) -> tuple[tuple, dict]:
    """The body and headers of Celery's task message (protocol 2) for `job_id`, as
    `send_task(KIND_TASKS[kind], args=[job_id], task_id=job_id)` builds them."""
    task = KIND_TASKS[kind]
    headers = {"lang": "py", "task": task, "id": job_id, "shadow": None, "eta": None, "expires": None,
               "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": job_id,
               "parent_id": None, "argsrepr": repr([job_id]), "kwargsrepr": "{}",
               "origin": f"gen{os.getpid()}@{_HOST}", "ignore_result": None, "replaced_task_nesting": 0,
               "stamped_headers": None, "stamps": {}}
    return ([job_id], {}, _EMBED), headers


def send(job_id: str, kind: str) -> None:
    """Publish the task message (the job id only: the worker reads the rest, request id too, from
    the record) straight to its queue's list. Raises when the broker cannot be reached.

    The message is the one `send_task` sends (tests/test_jobs.py compares them); publishing it
    with kombu skips send_task's per-message work (signature and result objects, the queue
    declaration check), about a third of a message's cost (python -m bench.publish).
    """
    app = celery_client()
    body, headers = task_message(job_id, kind)
    with app.producer_pool.acquire(block=True) as producer:
        producer.publish(body, exchange="", routing_key=route_for(headers["task"]), serializer="json",
                         headers=headers, correlation_id=job_id, reply_to=_REPLY_TO, delivery_mode=2,
                         retry=True, retry_policy=app.conf.task_publish_retry_policy)
