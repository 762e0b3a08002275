"""Jobs: records, ownership, signed URLs, SSE events, cancellation, retries and the sweeper."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
import requests

from shared.payloads import MailPayload, NoopPayload
from tests.support import bearer, job_state, new_email, parse_sse, wait_for_state, wait_until


def make_job(app, user_id, to=None, dispatch=True):
    """A mail job owned by `user_id`, written and (optionally) sent like the API does."""
    from shared import jobs
    from shared.database import write_tx
    with app.app_context():
        with write_tx():
            job = jobs.new_job("mail", user_id, MailPayload(to=to or new_email(), template="no_account",
                                                            context={"purpose": "register", "minutes": 5}))
        if dispatch:
            jobs.dispatch(job)
        return job.id


def test_job_record_and_ownership(app, client, smtp, users):
    a, b = users(), users()
    job_id = make_job(app, a["id"], to=a["email"])
    job = wait_for_state(client, job_id, a["access_token"])
    assert job["state"] == "succeeded" and job["kind"] == "mail" and job["attempts"] == 1
    assert job["result"]["message_id"] == f"<job-{job_id}@tests.local>"
    assert job["progress"] == 1.0 and job["finished_at"] and job["created_at"].endswith("Z")
    # Another user's job, an unknown id and a silly id are all plain 404s.
    for jid in (job_id, uuid.uuid4().hex, "x" * 200):
        r = client.get(f"/api/jobs/{jid}", headers=bearer(b["access_token"]))
        assert r.status_code == 404 and r.get_json()["error"]["code"] in {"not_found", "validation_error"}
    assert client.delete(f"/api/jobs/{job_id}", headers=bearer(b["access_token"])).status_code == 404
    assert client.get(f"/api/jobs/{job_id}/events", headers=bearer(b["access_token"])).status_code == 404
    # Listing shows only one's own.
    listed = client.get("/api/jobs", headers=bearer(b["access_token"])).get_json()
    assert job_id not in [j["id"] for j in listed["items"]]
    listed = client.get("/api/jobs", headers=bearer(a["access_token"]), query_string={"kind": "mail"}).get_json()
    assert job_id in [j["id"] for j in listed["items"]]


def test_signed_urls_are_bound_to_user_and_job_and_expire(app, client, users):
    a = users()
    job_id = make_job(app, a["id"], to=a["email"])
    job = wait_for_state(client, job_id, a["access_token"])
    assert client.get(job["status_url"]).status_code == 200  # no header needed
    events = client.get(job["events_url"])
    assert events.status_code == 200 and events.mimetype == "text/event-stream"
    assert parse_sse(events.get_data(as_text=True))[-1]["event"] == "done"
    other = make_job(app, a["id"], to=a["email"])
    sig = job["status_url"].split("sig=", 1)[1]
    r = client.get(f"/api/jobs/{other}?sig={sig}")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_signature"
    r = client.get(f"/api/jobs/{job_id}?sig={sig[:-2]}xx")
    assert r.status_code == 401
    from itsdangerous import URLSafeTimedSerializer

    from shared.settings import get_settings
    s = URLSafeTimedSerializer(get_settings().SECRET_KEY, salt="signed-url")
    old = s.dumps({"u": a["id"], "r": f"job:{job_id}"})
    import itsdangerous.timed as timed
    real_time = timed.time.time
    try:  # sign as if an hour ago
        timed.time.time = lambda: real_time() - 3600
        old = s.dumps({"u": a["id"], "r": f"job:{job_id}"})
    finally:
        timed.time.time = real_time
    r = client.get(f"/api/jobs/{job_id}?sig={old}")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "signature_expired"


def test_events_end_with_done_and_resume_after_last_event_id(app, client, users):
    a = users()
    job_id = make_job(app, a["id"], to=a["email"])
    wait_for_state(client, job_id, a["access_token"])
    r = client.get(f"/api/jobs/{job_id}/events", headers=bearer(a["access_token"]))
    assert r.headers["X-Accel-Buffering"] == "no" and r.headers["Cache-Control"] == "no-cache"
    events = parse_sse(r.get_data(as_text=True))
    assert events[-1]["event"] == "done" and events[-1]["data"]["result"]["message_id"]
    assert [e["event"] for e in events] == ["progress", "done"] and all(e["id"] for e in events)
    # Resuming after the first id gives the rest; after the terminal one, the final state again.
    r = client.get(f"/api/jobs/{job_id}/events", headers={**bearer(a["access_token"]),
                                                           "Last-Event-ID": events[0]["id"]})
    assert parse_sse(r.get_data(as_text=True)) == events[1:]
    r = client.get(f"/api/jobs/{job_id}/events", headers={**bearer(a["access_token"]),
                                                           "Last-Event-ID": events[-1]["id"]})
    assert [e["event"] for e in parse_sse(r.get_data(as_text=True))] == ["done"]
    r = client.get(f"/api/jobs/{job_id}/events", headers={**bearer(a["access_token"]), "Last-Event-ID": "nope"})
    assert r.status_code == 400


def test_cancel_a_queued_job(app, client, smtp, users):
    a = users()
    to = new_email()
    job_id = make_job(app, a["id"], to=to, dispatch=False)
    r = client.delete(f"/api/jobs/{job_id}", headers=bearer(a["access_token"]))
    assert r.status_code == 200 and r.get_json()["state"] == "cancelled"
    assert client.delete(f"/api/jobs/{job_id}", headers=bearer(a["access_token"])).status_code == 409
    # Delivered late anyway, it does not run.
    from shared import jobs
    jobs.send(job_id, "mail")
    later = make_job(app, a["id"], to=to)
    wait_for_state(client, later, a["access_token"])
    time.sleep(0.5)
    assert len(smtp.to(to)) == 1
    assert job_state(client, job_id, a["access_token"])["state"] == "cancelled"
    r = client.get(f"/api/jobs/{job_id}/events", headers=bearer(a["access_token"]))
    assert parse_sse(r.get_data(as_text=True))[-1]["event"] == "cancelled"


def test_transient_smtp_error_is_retried_and_permanent_is_not(app, client, smtp, users):
    a = users()
    flaky, bad = new_email(), new_email()
    smtp.replies[flaky] = ["451 4.3.0 Try again later"]
    smtp.replies[bad] = ["550 5.1.1 No such mailbox"]
    flaky_job = make_job(app, a["id"], to=flaky)
    bad_job = make_job(app, a["id"], to=bad)
    job = wait_for_state(client, flaky_job, a["access_token"], timeout=40)
    assert job["state"] == "succeeded" and job["attempts"] == 2
    assert len(smtp.to(flaky)) == 1
    events = parse_sse(client.get(f"/api/jobs/{flaky_job}/events", headers=bearer(a["access_token"]))
                       .get_data(as_text=True))
    assert any(e["event"] == "progress" and "retrying_in" in e["data"] for e in events)
    job = wait_for_state(client, bad_job, a["access_token"])
    assert job["state"] == "failed" and job["attempts"] == 1
    assert job["error"]["code"] == "mail_rejected" and "550" in job["error"]["message"]


def test_per_user_limit_on_active_jobs(app, users):
    from shared import jobs
    from shared.settings import get_settings
    a = users()
    limit = get_settings().MAX_ACTIVE_JOBS_PER_KIND
    for _ in range(limit):
        make_job(app, a["id"], dispatch=False)
    with pytest.raises(jobs.JobLimitExceeded):
        make_job(app, a["id"], dispatch=False)


def test_sweeper_sends_what_never_reached_redis_and_resumes_an_abandoned_job(app, client, beat, users):
    from sqlalchemy import update

    from shared.database import db, utcnow, write_tx
    from shared.models import Job
    a = users()
    never_sent = make_job(app, a["id"], to=a["email"], dispatch=False)
    abandoned = make_job(app, a["id"], to=a["email"], dispatch=False)
    with app.app_context():
        with write_tx():
            db.session.execute(update(Job).where(Job.id == never_sent).values(dispatched_at=None))
            # As if a worker on another host died holding it: running, with a lease that ran out.
            db.session.execute(update(Job).where(Job.id == abandoned).values(
                state="running", attempts=1, lease_owner="gone-host:4242",
                lease_expires_at=utcnow() - timedelta(seconds=1)))
    started = time.monotonic()
    for job_id in (never_sent, abandoned):
        job = wait_for_state(client, job_id, a["access_token"], timeout=20)
        assert job["state"] == "succeeded"
    assert time.monotonic() - started < 15
    assert job_state(client, abandoned, a["access_token"])["attempts"] == 2
    events = parse_sse(client.get(f"/api/jobs/{abandoned}/events", headers=bearer(a["access_token"]))
                       .get_data(as_text=True))
    assert [e["event"] for e in events][0] == "restarted" and events[-1]["event"] == "done"


def test_live_stream_over_a_real_server(app, live_server, users, client):
    """EventSource-style: open the stream first, then the job runs; keep-alives and events arrive."""
    a = users()
    job_id = make_job(app, a["id"], to=a["email"], dispatch=False)
    url = f"{live_server}/api/jobs/{job_id}/events"
    received: list[str] = []

    def follow():
        with requests.get(url, headers=bearer(a["access_token"]), stream=True, timeout=30) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_content(chunk_size=None, decode_unicode=True):
                received.append(chunk)

    t = threading.Thread(target=follow)
    t.start()
    wait_until(lambda: any(": keep-alive" in c for c in received), timeout=10, what="a keep-alive comment")
    from shared import jobs
    jobs.send(job_id, "mail")
    t.join(30)
    assert not t.is_alive(), "the stream did not end after the terminal event"
    events = parse_sse("".join(received))
    assert events[-1]["event"] == "done"


def test_the_broker_lookup_sees_waiting_messages_and_not_taken_ones(app):
    """What the sweeper asks before sending a queued job again: does its message still wait in its
    queue? Real kombu messages in a queue of this test's own; a message a consumer took counts as
    taken whether kombu recorded it as unacked or not (the job, still queued, was never claimed)."""
    from shared import broker, jobs
    from shared.redis_client import get_redis
    queue = f"scratch-{uuid.uuid4().hex[:8]}"
    ids = [uuid.uuid4().hex for _ in range(3)]
    celery = jobs.celery_client()
    for task_id in ids:
        celery.send_task("mail.send", args=[task_id], task_id=task_id, queue=queue)
    r = get_redis()
    try:
        assert broker.find_waiting(r, [queue], ids + ["other"]) == set(ids)
        with celery.connection_for_write() as conn:
            channel = conn.default_channel
            held = channel.basic_get(queue, no_ack=False)  # taken by a consumer, recorded as unacked
            assert held is not None and held.headers["id"] == ids[0]
            assert broker.find_waiting(r, [queue], ids) == {ids[1], ids[2]}
            r.rpop(queue)  # taken by a consumer that died before recording it
            assert broker.find_waiting(r, [queue], ids) == {ids[2]}
            channel.basic_ack(held.delivery_tag)
    finally:
        r.delete(queue)


def test_a_jobs_log_context_ends_with_it(app):
    """A job's ids are in its log lines and in none after it: the next task of the same pool process
    (the sweeper's) logs without them."""
    import logging

    from shared import jobs
    from shared.database import write_tx
    from shared.logs import ContextFilter, job_id_var, request_id_var
    from worker.tasks.maintenance import noop, sweep_jobs

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append((record.getMessage(), record.job_id, record.request_id))
    handler = Keep(logging.INFO)
    handler.addFilter(ContextFilter())
    base_log = logging.getLogger("worker.tasks.base")
    level, propagate = base_log.level, base_log.propagate
    base_log.addHandler(handler)
    base_log.setLevel(logging.INFO)
    base_log.propagate = False
    try:
        with app.app_context():
            with write_tx():
                job = jobs.new_job("noop", None, NoopPayload(), request_id="req-of-the-job")
            job_id = job.id
        noop.apply(args=[job_id])
    finally:
        base_log.removeHandler(handler)
        base_log.setLevel(level)
        base_log.propagate = propagate
    assert (f"job {job_id} (noop) succeeded on attempt 1", job_id, "req-of-the-job") in seen, seen
    assert (job_id_var.get(), request_id_var.get()) == ("-", "-")

    # A task after one that left its ids behind (as a crash could) starts without them.
    job_id_var.set("stale-job")
    request_id_var.set("stale-request")
    sweep_jobs.apply()
    assert (job_id_var.get(), request_id_var.get()) == ("-", "-")


def test_payloads_are_typed_and_validated_again_by_the_worker(app, client, users, worker):
    """A job takes its kind's payload model, never a dict; a stored payload the worker cannot
    validate fails the job once with `bad_payload` (nothing is run)."""
    from sqlalchemy import update

    from shared import jobs
    from shared.database import db, write_tx
    from shared.models import Job
    a = users()
    with app.app_context():
        with pytest.raises(TypeError), write_tx():
            jobs.new_job("mail", a["id"], {"to": "x@example.com", "template": "no_account"})
        with pytest.raises(TypeError), write_tx():
            jobs.new_job("mail", a["id"], NoopPayload())
        with write_tx():
            job = jobs.new_job("mail", a["id"], MailPayload(to=new_email(), template="no_account"))
            db.session.execute(update(Job).where(Job.id == job.id).values(payload={"to": 3, "surprise": True}))
        jobs.dispatch(job)
    found = wait_for_state(client, job.id, a["access_token"])
    assert found["state"] == "failed" and found["error"]["code"] == "bad_payload" and found["attempts"] == 1, found


def test_a_running_reply_is_cancelled_by_its_worker_or_once_by_the_sweeper_when_it_died(app, client, users,
                                                                                       monkeypatch):
    """One owner per row while a job runs: cancelling a running chat job records the request (state,
    flag, event) and leaves the reply to its worker. Its worker here is dead (a holder that no
    longer renews its lease): the sweeper applies the cancel, keeping what streamed, exactly once."""
    from sqlalchemy import update

    import api.services.chat
    from shared.database import db, utcnow, write_tx
    from shared.jobs import stream
    from shared.models import Job, Message
    from shared.redis_client import get_redis
    from worker.tasks.maintenance import sweep_jobs
    a = users()
    # The job goes to the ghost host below, not to this run's worker (which would race it for the claim).
    monkeypatch.setattr(api.services.chat, "dispatch", lambda job: None)
    sent = client.post("/api/chat/send", headers=bearer(a["access_token"]), json={"message": "tell me"}).get_json()
    job_id = sent["job_id"]
    with app.app_context():
        with write_tx():  # a worker on another host took it and streamed two tokens
            db.session.execute(update(Job).where(Job.id == job_id).values(
                state="running", attempts=1, lease_owner="ghost-host:4242",
                lease_expires_at=utcnow() + timedelta(seconds=60)))
        for delta in ("Hello ", "world"):
            stream.publish(get_redis(), job_id, "token", {"delta": delta})
    r = client.delete(f"/api/jobs/{job_id}", headers=bearer(a["access_token"]))
    assert r.status_code == 200 and r.get_json()["state"] == "cancelled", r.get_json()
    with app.app_context():
        reply = db.session.execute(select_reply(job_id)).scalar_one()
        assert reply.status == "streaming", "the API wrote the reply of a job its worker still held"
        sweep_jobs.apply()  # its lease has not run out: the holder may still apply it
        assert db.session.execute(select_reply(job_id)).scalar_one().status == "streaming"
        with write_tx():  # the holder stopped renewing: it is gone
            db.session.execute(update(Job).where(Job.id == job_id).values(
                lease_expires_at=utcnow() - timedelta(seconds=1)))
        sweep_jobs.apply()
        db.session.expire_all()
        reply = db.session.execute(select_reply(job_id)).scalar_one()
        assert (reply.status, reply.content) == ("cancelled", "Hello world")
        job = db.session.get(Job, job_id)
        assert job.state == "cancelled" and job.lease_expires_at is None
        with write_tx():  # settled once: a later sweep finds nothing to do
            db.session.execute(update(Message).where(Message.id == reply.id).values(content="kept"))
        sweep_jobs.apply()
        db.session.expire_all()
        assert db.session.execute(select_reply(job_id)).scalar_one().content == "kept"
        names = [name for _id, name, _data in stream.history(get_redis(), job_id)]
    assert names == ["token", "token", "cancelled"], names


def select_reply(job_id):
    """The assistant message a chat job writes."""
    from sqlalchemy import select

    from shared.models import Message
    return select(Message).where(Message.job_id == job_id, Message.role == "assistant")
