"""The per-process SSE reader (api/services/sse.py StreamHub) against a real Redis: many
followers of one job, joining at different moments and positions, each get every event once,
in order, with no gap; followers of different jobs get only their own."""
from __future__ import annotations

import threading
import time
import uuid

from api.services import sse
from shared.jobs import stream
from shared.redis_client import get_redis


def _follow(job_id: str, after: str, out: list, errors: list) -> None:
    try:
        for frame in sse.stream(job_id, after, None):
            out.append(frame)
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def _ids_and_names(frames: list[str]) -> list[tuple[str, str]]:
    out = []
    for frame in frames:
        fields = dict(line.split(": ", 1) for line in frame.strip().splitlines() if ": " in line)
        if "event" in fields:
            out.append((fields.get("id", ""), fields["event"]))
    return out


def test_followers_joining_mid_stream_get_every_event_once_in_order(app):
    with app.app_context():
        r = get_redis()
        jobs = [uuid.uuid4().hex for _ in range(3)]
        written: dict[str, list[str]] = {j: [] for j in jobs}
        followers: list[tuple[str, str, list, list, threading.Thread]] = []

        def start(job_id: str, after: str = "") -> None:
            out, errors = [], []
            t = threading.Thread(target=_follow, args=(job_id, after, out, errors), daemon=True)
            followers.append((job_id, after, out, errors, t))
            t.start()

        for j in jobs:
            start(j)
        for i in range(120):
            for j in jobs:
                written[j].append(stream.publish(r, j, "token", {"delta": f"t{i} "}))
            if i % 20 == 10:  # joiners: from the start, from a recent event, and live
                start(jobs[0], written[jobs[0]][i - 5])
                start(jobs[1])
            time.sleep(0.002)
        for j in jobs:
            written[j].append(stream.publish(r, j, "done", {"state": "succeeded"}))
        for _, _, _, _, t in followers:
            t.join(15)

        for job_id, after, out, errors, t in followers:
            assert not t.is_alive(), "a follower never saw its job end"
            assert not errors, errors
            got = _ids_and_names(out)
            ids = written[job_id]
            expected = ids[ids.index(after) + 1:] if after else ids
            assert [i for i, _ in got] == expected, f"follower of {job_id} from {after or 'the start'}: gap or repeat"
            assert got[-1][1] == "done"
