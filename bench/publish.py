"""The cost of sending one task message, by way of sending it: python -m bench.publish [-n N]

Compares Celery's `send_task` acquiring its own producer, `send_task` with a producer taken
from the pool by the caller (what shared.jobs.kinds.send does), and a bare Redis LPUSH (the
floor), on a Redis server of its own.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path


def main() -> None:
    """Print ms per message for each way of sending it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=3000)
    n = parser.parse_args().n
    from devtools.stack import start_redis
    tmp = Path(tempfile.mkdtemp(prefix="mentor-publish-"))
    proc, url = start_redis(tmp / "redis")
    os.environ["REDIS_URL"] = url
    try:
        import redis

        from shared.jobs.kinds import celery_client
        app = celery_client()

        def own():
            app.send_task("default.noop", args=["x"], task_id=uuid.uuid4().hex)

        def pooled():
            with app.producer_pool.acquire(block=True) as producer:
                app.send_task("default.noop", args=["x"], task_id=uuid.uuid4().hex, producer=producer)

        r = redis.Redis.from_url(url)
        payload = b"x" * 600
        for name, fn in (("send_task", own), ("send_task, pooled producer", pooled),
                         ("LPUSH alone", lambda: r.lpush("floor", payload))):
            for _ in range(100):
                fn()
            started = time.perf_counter()
            for _ in range(n):
                fn()
            print(f"{name:28} {(time.perf_counter() - started) / n * 1000:.3f} ms per message")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
