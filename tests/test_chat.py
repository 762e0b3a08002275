"""Chat through the real API, Redis and Celery worker, with the echo provider (the pipeline itself)."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
import requests

from tests.support import bearer, parse_sse, wait_for_state, wait_until


def send(client, token, message="What is a derivative?", **extra):
    headers = {**bearer(token), **extra.pop("headers", {})}
    return client.post("/api/chat/send", headers=headers, json={"message": message, **extra})


def test_send_streams_tokens_then_done_and_keeps_both_messages(client, users):
    u = users()
    r = send(client, u["access_token"])
    assert r.status_code == 202, r.get_json()
    sent = r.get_json()
    assert {"job_id", "conversation_id", "message_id", "reply_message_id", "status_url", "events_url"} <= sent.keys()
    job = wait_for_state(client, sent["job_id"], u["access_token"])
    assert job["state"] == "succeeded", job
    events = parse_sse(client.get(sent["events_url"]).get_data(as_text=True))
    tokens = [e["data"]["delta"] for e in events if e["event"] == "token"]
    assert tokens == [f"tok{i} " for i in range(10)]
    done = events[-1]
    assert done["event"] == "done"
    stored = done["data"]["result"]["message"]
    assert stored["content"] == "".join(tokens) and stored["status"] == "complete"
    assert stored["id"] == sent["reply_message_id"]
    assert job["result"]["message"]["content"] == stored["content"]  # polling gives the same result
    h = client.get("/api/chat/history", headers=bearer(u["access_token"]),
                   query_string={"conversation_id": sent["conversation_id"]}).get_json()
    assert [(m["role"], m["status"]) for m in h["items"]] == [("user", "complete"), ("assistant", "complete")]
    assert h["items"][0]["content"] == "What is a derivative?" and h["items"][1]["content"] == stored["content"]
    convs = client.get("/api/chat/conversations", headers=bearer(u["access_token"])).get_json()
    assert convs["items"][0]["id"] == sent["conversation_id"]
    assert convs["items"][0]["title"] == "What is a derivative?"


def test_a_conversation_continues_and_history_pages_with_a_cursor(client, users):
    u = users()
    first = send(client, u["access_token"], "one").get_json()
    wait_for_state(client, first["job_id"], u["access_token"])
    conv = first["conversation_id"]
    for text in ("two", "three"):
        r = send(client, u["access_token"], text, conversation_id=conv)
        assert r.status_code == 202 and r.get_json()["conversation_id"] == conv
        wait_for_state(client, r.get_json()["job_id"], u["access_token"])
    h = bearer(u["access_token"])
    page = client.get("/api/chat/history", headers=h, query_string={"conversation_id": conv, "limit": 4}).get_json()
    assert page["has_more"] and len(page["items"]) == 4
    assert [m["content"] for m in page["items"] if m["role"] == "user"] == ["two", "three"]
    older = client.get("/api/chat/history", headers=h, query_string={
        "conversation_id": conv, "limit": 4, "before": page["next_before"]}).get_json()
    assert not older["has_more"] and [m["content"] for m in older["items"]][0] == "one" and len(older["items"]) == 2
    r = client.get("/api/chat/history", headers=h, query_string={"conversation_id": conv, "before": "nope"})
    assert r.status_code == 400


def test_idempotency_key(client, users):
    u = users()
    key = {"Idempotency-Key": "retry-" + uuid.uuid4().hex}
    a = send(client, u["access_token"], "same", headers=key)
    b = send(client, u["access_token"], "same", headers=key)
    assert a.status_code == b.status_code == 202
    assert a.get_json()["job_id"] == b.get_json()["job_id"]
    assert a.get_json()["conversation_id"] == b.get_json()["conversation_id"]
    jobs = client.get("/api/jobs", headers=bearer(u["access_token"]), query_string={"kind": "chat"}).get_json()
    assert jobs["total"] == 1, "the replay queued nothing"
    r = send(client, u["access_token"], "different", headers=key)
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "idempotency_key_reused"
    r = send(client, u["access_token"], "x", headers={"Idempotency-Key": "bad key!"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_idempotency_key"
    other = users()  # keys are per user
    r = send(client, other["access_token"], "same", headers=key)
    assert r.status_code == 202 and r.get_json()["job_id"] != a.get_json()["job_id"]


def test_an_idempotency_key_past_its_time_to_live_is_free_again(app, client, users):
    """A key older than IDEMPOTENCY_TTL_HOURS that the purge has not removed yet sends anew:
    the insert that its unique constraint refuses is retried once the old record is gone."""
    from sqlalchemy import update

    from shared.database import db, utcnow, write_tx
    from shared.models import IdempotencyKey
    from shared.settings import get_settings
    u = users()
    key = {"Idempotency-Key": "old-" + uuid.uuid4().hex}
    first = send(client, u["access_token"], "same", headers=key).get_json()
    with app.app_context(), write_tx():
        aged = utcnow() - timedelta(hours=get_settings().IDEMPOTENCY_TTL_HOURS, minutes=1)
        assert db.session.execute(update(IdempotencyKey).where(IdempotencyKey.key == key["Idempotency-Key"])
                                  .values(created_at=aged)).rowcount == 1
    again = send(client, u["access_token"], "same", headers=key)
    assert again.status_code == 202 and again.get_json()["job_id"] != first["job_id"]
    replay = send(client, u["access_token"], "same", headers=key)
    assert replay.get_json()["job_id"] == again.get_json()["job_id"], "the new record answers replays now"


def test_bad_input_is_refused_and_stores_nothing(client, users):
    u = users()
    a = users()
    mine = send(client, a["access_token"], "private").get_json()
    cases = [
        ({"message": ""}, 400), ({"message": "   "}, 400), ({"message": "x" * 2001}, 400),
        ({"message": "hi", "conversation_id": uuid.uuid4().hex}, 404),
        ({"message": "hi", "conversation_id": mine["conversation_id"]}, 404),  # another user's
        ({"message": "hi", "options": {"voice": "x"}}, 400),
        ({"message": "hi", "role": "system"}, 400),
    ]
    for body, status in cases:
        r = client.post("/api/chat/send", headers=bearer(u["access_token"]), json=body)
        assert r.status_code == status, (body, r.get_json())
        assert "error" in r.get_json()
    r = client.post("/api/chat/send", headers=bearer(u["access_token"]), data="x" * (2 * 1024 * 1024),
                    content_type="application/json")
    assert r.status_code == 413
    assert client.get("/api/chat/conversations", headers=bearer(u["access_token"])).get_json()["total"] == 0


def test_conversations_are_private_renamable_and_deletable(client, users):
    a, b = users(), users()
    sent = send(client, a["access_token"]).get_json()
    conv = sent["conversation_id"]
    for method, path, body in [("GET", f"/api/chat/history?conversation_id={conv}", None),
                               ("PATCH", f"/api/chat/conversations/{conv}", {"title": "mine now"}),
                               ("DELETE", f"/api/chat/conversations/{conv}", None)]:
        r = client.open(path, method=method, headers=bearer(b["access_token"]), json=body)
        assert r.status_code == 404, (method, path)
    assert b["id"] not in str(client.get("/api/chat/conversations", headers=bearer(b["access_token"])).get_json())
    r = client.patch(f"/api/chat/conversations/{conv}", headers=bearer(a["access_token"]), json={"title": " Calculus "})
    assert r.status_code == 200 and r.get_json()["title"] == "Calculus"
    assert client.patch(f"/api/chat/conversations/{conv}", headers=bearer(a["access_token"]),
                        json={"title": ""}).status_code == 400
    wait_for_state(client, sent["job_id"], a["access_token"])
    r = client.delete(f"/api/chat/conversations/{conv}", headers=bearer(a["access_token"]))
    assert r.status_code == 200
    r = client.get("/api/chat/history", headers=bearer(a["access_token"]), query_string={"conversation_id": conv})
    assert r.status_code == 404


@pytest.fixture(scope="module")
def slow_stack(make_stack):
    """A stack whose echo provider takes 4 s for its 40 tokens."""
    stack = make_stack("slow-echo", LLM_ECHO_RATE="10", LLM_ECHO_TOKENS="40")
    stack.start_worker()
    stack.start_web()
    return stack


def test_cancel_stops_generation_within_a_second_and_keeps_the_partial_reply(slow_stack, users):
    u = users()
    h = bearer(u["access_token"])
    sent = requests.post(f"{slow_stack.url}/api/chat/send", headers=h, json={"message": "a long story"}).json()
    got_token = threading.Event()
    frames: list[str] = []

    def follow():
        with requests.get(slow_stack.url + sent["events_url"], stream=True, timeout=30) as resp:
            for chunk in resp.iter_content(chunk_size=None, decode_unicode=True):
                frames.append(chunk)
                if "event: token" in chunk:
                    got_token.set()

    t = threading.Thread(target=follow)
    t.start()
    assert got_token.wait(15), "no token arrived"
    r = requests.delete(f"{slow_stack.url}/api/jobs/{sent['job_id']}", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    t.join(10)
    assert not t.is_alive()
    assert parse_sse("".join(frames))[-1]["event"] == "cancelled"

    def reply():
        return requests.get(f"{slow_stack.url}/api/chat/history", headers=h,
                            params={"conversation_id": sent["conversation_id"]}).json()["items"][-1]
    time.sleep(1.0)
    settled = reply()
    time.sleep(1.0)
    later = reply()
    assert settled["status"] == later["status"] == "cancelled" and not later["streaming"]
    assert settled["content"] == later["content"], "generation went on after the cancel"
    assert later["content"].startswith("tok0") and len(later["content"].split()) < 40
    job = requests.get(f"{slow_stack.url}/api/jobs/{sent['job_id']}", headers=h).json()
    assert job["state"] == "cancelled"


def test_history_shows_a_reply_while_it_streams(slow_stack, users):
    u = users()
    h = bearer(u["access_token"])
    sent = requests.post(f"{slow_stack.url}/api/chat/send", headers=h, json={"message": "go on"}).json()

    def partial():
        items = requests.get(f"{slow_stack.url}/api/chat/history", headers=h,
                             params={"conversation_id": sent["conversation_id"]}).json()["items"]
        reply = items[-1]
        return reply if reply["streaming"] and reply["content"] else None
    reply = wait_until(partial, timeout=10, what="a partial reply in the history")
    assert reply["status"] == "streaming" and reply["content"].startswith("tok0")
