"""Open event streams per user: capped in Redis (MAX_STREAMS_PER_USER) across the web processes,
freed when a stream closes, and never leaked by a killed process (an entry expires four
keep-alive periods after its last renewal). Against a real gunicorn with two gevent workers."""
from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
import redis
import requests

from shared.payloads import NoopPayload
from tests.support import bearer, wait_until

CAP = 3
KEEPALIVE = 1.0


@pytest.fixture(scope="module")
def stream_stack(make_stack):
    stack = make_stack("streams", MAX_STREAMS_PER_USER=str(CAP), SSE_KEEPALIVE_SECONDS=str(KEEPALIVE))
    stack.start_web(workers=2)
    return stack


def running_jobs(app, user_id: str, n: int) -> list[str]:
    """Jobs of this user held `running` under a lease that outlives the test: their streams stay open."""
    from sqlalchemy import update

    from shared import jobs
    from shared.database import db, utcnow, write_tx
    from shared.models import Job
    with app.app_context():
        with write_tx():
            ids = [jobs.new_job("noop", user_id, NoopPayload()).id for _ in range(n)]
            db.session.execute(update(Job).where(Job.id.in_(ids)).values(
                state="running", lease_owner="stream-test:0", lease_expires_at=utcnow() + timedelta(hours=1)))
        db.session.remove()
    return ids


def end_jobs(app, ids: list[str]) -> None:
    from sqlalchemy import update

    from shared.database import db, write_tx
    from shared.models import Job
    with app.app_context():
        with write_tx():
            db.session.execute(update(Job).where(Job.id.in_(ids)).values(state="cancelled", lease_owner=None))
        db.session.remove()


def open_stream(url: str, token: str, job_id: str) -> requests.Response:
    """GET the job's events; when accepted, wait until the stream has begun."""
    r = requests.get(f"{url}/api/jobs/{job_id}/events", headers=bearer(token), stream=True, timeout=10)
    if r.status_code == 200:
        r.chunks = r.iter_content(chunk_size=None)  # kept: a dropped iterator closes the connection
        assert next(r.chunks).startswith(b"retry:")
    return r


def accepted(url: str, token: str, job_id: str) -> requests.Response | None:
    r = open_stream(url, token, job_id)
    if r.status_code == 200:
        return r
    assert r.status_code == 429, r.text
    r.close()
    return None


def test_open_streams_are_capped_per_user_freed_on_close_and_not_leaked_by_a_killed_process(
        stream_stack, app, users):
    stack = stream_stack
    u, other = users(), users()
    mine, theirs = running_jobs(app, u["id"], CAP + 1), running_jobs(app, other["id"], 1)
    token = u["access_token"]
    try:
        streams = [open_stream(stack.url, token, j) for j in mine[:CAP]]
        assert [r.status_code for r in streams] == [200] * CAP
        refused = open_stream(stack.url, token, mine[CAP])
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert refused.json()["error"]["details"] == {"limit": CAP} and int(refused.headers["Retry-After"]) >= 1
        with open_stream(stack.url, other["access_token"], theirs[0]) as r:  # another user's streams are theirs
            assert r.status_code == 200

        # A closed stream's slot is free once the server sees the close (at its next keep-alive).
        streams.pop().close()
        streams.append(wait_until(lambda: accepted(stack.url, token, mine[CAP]), timeout=3 * KEEPALIVE + 2,
                                  interval=0.2, what="the closed stream's slot"))

        # Killed with its streams open, the web server frees nothing: the slots are in Redis, and expire.
        stack.stop("web", signal.SIGKILL)
        killed = time.monotonic()
        assert redis.Redis.from_url(stack.redis_url).zcard(f"sse:open:user:{u['id']}") == CAP
        for r in streams:
            r.close()
        stack.start_web(workers=2)
        reopened = wait_until(lambda: accepted(stack.url, token, mine[0]), timeout=15, interval=0.2,
                              what="the killed process's slots to expire")
        took = time.monotonic() - killed
        reopened.close()
        print(f"\nslots of a killed web server free again {took:.1f} s after the kill "
              f"(entries live {4 * KEEPALIVE:.0f} s past their last renewal)")
    finally:
        end_jobs(app, mine + theirs)
