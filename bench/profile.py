"""Where the time goes, in-process: python -m bench.profile [--tree poll|enqueue|essential-poll|...]

Times each hot path without a server or a network client in the way: the bare endpoint,
polling and enqueue, the essential poll and enqueue (bench/essential_app.py) (Flask's test
client), and a no-op and an echo chat job through the task
wrapper (Celery's `apply`, in this process; the worker's own receive/ack costs are not in it).
With `--tree`, prints a pyinstrument call tree of that path: the profiles bench/README.md
quotes. Uses its own Redis and SQLite like `python -m bench.run`.
"""
from __future__ import annotations

import argparse
import os
import time

from shared.payloads import NoopPayload

PATHS = ("poll", "enqueue", "essential-poll", "essential-enqueue", "noop", "chat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", choices=PATHS, help="print a pyinstrument call tree of this path")
    parser.add_argument("-n", type=int, default=1000, help="requests or jobs per timing (default 1000)")
    args = parser.parse_args()
    os.environ.update(LLM_PROVIDER="echo", LLM_ECHO_TOKENS="1", LLM_ECHO_RATE="100000")
    from bench.bare_app import create_app as bare_app
    from bench.harness import Environment
    env = Environment()
    try:
        from shared import jobs
        from shared.database import write_tx
        from worker.tasks.chat import chat_reply
        from worker.tasks.maintenance import noop

        app = env.app
        _, token = env.user()
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        body = {"message": "What is a derivative?"}

        def enqueue():
            return client.post("/api/chat/send", headers=headers, json=body).get_json()["job_id"]

        def noop_job():
            with app.app_context():
                with write_tx():
                    return jobs.new_job("noop", None, NoopPayload()).id

        from bench.essential_app import create_app as essential_app
        job_id = enqueue()
        bare = bare_app().test_client()
        essential = essential_app().test_client()
        calls = {
            "bare": lambda: bare.get("/bare"),
            "poll": lambda: client.get(f"/api/jobs/{job_id}", headers=headers),
            "enqueue": enqueue,
            "essential-poll": lambda: essential.get(f"/api/jobs/{job_id}", headers=headers),
            "essential-enqueue": lambda: essential.post("/api/chat/send", headers=headers, json=body),
        }
        for name, fn in calls.items():
            print(f"{name:17} {_per_call(fn, args.n) * 1000:7.3f} ms per request")
        for name, task, make in (("noop", noop, noop_job), ("chat", chat_reply, enqueue)):
            ids = [make() for _ in range(args.n + 20)]
            it = iter(ids)
            per_job = _per_call(lambda task=task, it=it: task.apply(args=[next(it)]), args.n)
            print(f"{name:17} {per_job * 1000:7.3f} ms per job")
        if args.tree:
            _tree(args.tree, calls, {"noop": (noop, noop_job), "chat": (chat_reply, enqueue)}, args.n)
    finally:
        env.close()


def _per_call(fn, n: int) -> float:
    for _ in range(20):
        fn()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def _tree(name: str, calls: dict, tasks: dict, n: int) -> None:
    from pyinstrument import Profiler
    if name in tasks:
        task, make = tasks[name]
        ids = [make() for _ in range(n)]
        work = [lambda i=i: task.apply(args=[i]) for i in ids]
    else:
        work = [calls[name]] * n
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for fn in work:
        fn()
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False))


if __name__ == "__main__":
    main()
