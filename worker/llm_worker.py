"""Start the llm queue's worker with the pool that fits LLM_PROVIDER.

The local model is CPU-bound: one prefork process generates at a time and keeps the model
loaded. Remote providers are I/O-bound: a gevent pool holds many waiting calls at once.
Either way a reply has CHAT_TIME_LIMIT: on prefork the soft limit's signal; on gevent (which
has no soft limit) the deadline the reply checks with each token; on both the hard limit
TIME_LIMIT_GRACE later (worker/tasks/base.py).
Run: python -m worker.llm_worker [extra celery worker options]
"""
from __future__ import annotations

import os
import sys

from shared.settings import get_settings


def argv() -> list[str]:
    """Return the `celery worker` command line for the llm queue: prefork for local, gevent for remote providers."""
    s = get_settings()
    if s.LLM_PROVIDER == "local":
        pool, concurrency = "prefork", os.environ.get("LLM_CONCURRENCY", "1")
    else:
        pool, concurrency = "gevent", os.environ.get("LLM_CONCURRENCY", "200")
    return ["celery", "-A", "worker.celery_app", "worker", "--queues", "llm", "--pool", pool,
            "--concurrency", concurrency, "--prefetch-multiplier", "1", "--hostname", "llm@%h",
            "--without-mingle", *sys.argv[1:]]


if __name__ == "__main__":
    args = argv()
    os.execvp(args[0], args)
