"""Uploads that cost the API nothing to refuse, per-user rate limits, and the storage quota.

A hostile zip64 (500,000 central directory entries, 23.5 MB, written here as bytes) is refused
from its end records while the API keeps serving; real DOCX files are still recognised. The
per-user limits and the quota are proven with low values set on the settings of this process.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import struct
import threading
import time
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests import documents
from tests.support import bearer, wait_for_state, wait_until

LOCAL_HEADER = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"a"
CENTRAL_HEADER = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"


def zip64_end(body: bytes, entries: int, cd_size: int, cd_offset: int) -> bytes:
    """`body` (entries, then the central directory) closed by a zip64 end record, its locator and an EOCD
    whose counts say "see zip64"."""
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, cd_size, cd_offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body), 1)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + record + locator + eocd


def hostile_zip64(entries: int = 500_000) -> bytes:
    """One local header and `entries` central directory entries pointing at it: what zipfile parses for seconds."""
    return zip64_end(LOCAL_HEADER + CENTRAL_HEADER * entries, entries, len(CENTRAL_HEADER) * entries,
                     len(LOCAL_HEADER))


def as_zip64(archive: bytes) -> bytes:
    """The same archive with zip64 end records instead of its plain EOCD."""
    at = archive.rfind(b"PK\x05\x06")
    _, _, _, _, entries, cd_size, cd_offset, _ = struct.unpack_from("<4s4H2LH", archive, at)
    return zip64_end(archive[:at], entries, cd_size, cd_offset)


def upload(client, token, content: bytes, name: str, **environ):
    return client.post("/api/upload/file", headers=bearer(token), data={"file": (io.BytesIO(content), name)},
                       content_type="multipart/form-data", environ_overrides=environ or None)


def post_file(base: str, token: str, name: str, content: bytes) -> tuple[float, int, dict]:
    """POST a multipart upload: seconds from its last byte sent to the answer, the status and the body."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", "/api/upload/file", body,
                     {**bearer(token), "Content-Type": f"multipart/form-data; boundary={boundary}"})
        sent = time.perf_counter()
        r = conn.getresponse()
        return time.perf_counter() - sent, r.status, json.loads(r.read())
    finally:
        conn.close()


def test_a_hostile_zip64_is_refused_from_its_end_records_while_the_api_keeps_serving(live_server, users):
    u = users()
    assert len(zipfile.ZipFile(io.BytesIO(hostile_zip64(10))).namelist()) == 10  # what zipfile reads, entry by entry
    hostile = hostile_zip64()
    answers: list[tuple[float, int, dict]] = []
    uploads = [threading.Thread(target=lambda: answers.append(post_file(live_server, u["access_token"], "course.docx",
                                                                        hostile))) for _ in range(2)]
    for t in uploads:
        t.start()
    probes = []
    while len(probes) < 20:
        started = time.perf_counter()
        assert requests.get(f"{live_server}/api/health", timeout=30).status_code == 200
        probes.append(time.perf_counter() - started)
        time.sleep(0.02)
    for t in uploads:
        t.join(60)
    print(f"\nhealth probes during two hostile uploads: slowest {max(probes) * 1000:.0f} ms; uploads answered "
          f"{', '.join(f'{a[0]:.2f} s' for a in answers)} after their last byte")
    assert max(probes) < 0.5, sorted(probes)[-3:]
    assert len(answers) == 2 and max(a[0] for a in answers) < 1.0, answers
    for _, status, body in answers:
        assert status == 415, body
        assert body["error"]["code"] == "unsafe_file" and body["error"]["details"]["entries"] == 500_000, body


def test_real_docx_files_are_still_recognised(client, users):
    from api.errors import APIError
    from api.services.sniff import sniff

    def kind(content: bytes) -> str | None:
        return sniff(io.BytesIO(content), "f.docx")
    real = documents.docx(["Osmosis moves water across a membrane."])
    commented = io.BytesIO()
    with zipfile.ZipFile(commented, "w") as z:
        z.writestr("word/document.xml", "<w:document/>")
        z.writestr("word/document.xml.rels", "")
        z.comment = b"PK\x05\x06 not the end record " * 10
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("notes/word/document.xml", "not at the root")
    assert kind(real) == kind(as_zip64(real)) == kind(documents.zip_bomb_docx(5)) == "docx"
    assert kind(commented.getvalue()) == "docx"
    assert kind(plain.getvalue()) == "zip"
    assert kind(real[:-30]) is None  # its end record cut off
    with pytest.raises(APIError) as refused:
        kind(hostile_zip64(6000))
    assert refused.value.status == 415 and refused.value.code == "unsafe_file"
    # Through the API and the worker: zip64 end records are read by both.
    u = users()
    r = upload(client, u["access_token"], as_zip64(real), "osmosis.docx")
    assert r.status_code == 202, r.get_json()
    assert wait_for_state(client, r.get_json()["job_id"], u["access_token"], timeout=60)["state"] == "succeeded"


def test_per_user_rate_limits_are_keyed_on_the_user_and_answer_429_with_retry_after(client, users, monkeypatch):
    from shared.settings import get_settings
    s = get_settings()
    for name, value in {"CHAT_RATE_LIMIT": "2/minute", "TTS_RATE_LIMIT": "1/minute",
                        "UPLOAD_RATE_LIMIT": "2/hour", "SEARCH_RATE_LIMIT": "2/minute"}.items():
        monkeypatch.setattr(s, name, value)
    u, other = users(), users()
    h = bearer(u["access_token"])
    wait_until(lambda: client.get("/api/tts/voices", headers=h).status_code == 200, timeout=20, what="voices")
    elsewhere = {"REMOTE_ADDR": "10.251.0.1"}
    routes = {
        "chat": (2, lambda token, n, **env: client.post("/api/chat/send", headers=bearer(token),
                                                        json={"message": f"hi {n}"}, environ_overrides=env)),
        "tts": (1, lambda token, n, **env: client.post("/api/tts", headers=bearer(token), json={"text": f"hi {n}"},
                                                       environ_overrides=env)),
        "upload": (2, lambda token, n, **env: upload(client, token, f"notes {n} {token[-8:]}".encode(), "n.txt",
                                                     **env)),
        "search": (2, lambda token, n, **env: client.post("/api/knowledge/search", headers=bearer(token),
                                                          json={"query": f"notes {n}"}, environ_overrides=env)),
    }
    first_chat = client.post("/api/chat/send", headers={**h, "Idempotency-Key": "rate-limit-replay-1"},
                             json={"message": "hi 0"})
    assert first_chat.status_code == 202
    for route, (limit, call) in routes.items():
        statuses = [call(u["access_token"], n).status_code for n in range(limit - (route == "chat"))]
        assert 429 not in statuses, (route, statuses)
        for refused in (call(u["access_token"], 99), call(u["access_token"], 98, **elsewhere)):  # not per IP
            assert refused.status_code == 429, (route, refused.get_json())
            error = refused.get_json()["error"]
            assert error["code"] == "rate_limited" and error["details"]["retry_after"] >= 1, (route, error)
            assert 1 <= int(refused.headers["Retry-After"]) <= 3600
        assert call(other["access_token"], 97).status_code != 429, route  # same IP, another user
    replay = client.post("/api/chat/send", headers={**h, "Idempotency-Key": "rate-limit-replay-1"},
                         json={"message": "hi 0"})
    assert replay.status_code == 202 and replay.get_json()["job_id"] == first_chat.get_json()["job_id"]


def test_storage_quota_counts_files_and_audio_once_and_refuses_before_storing(app, client, users, monkeypatch):
    from shared.database import db, write_tx
    from shared.models import AudioClip
    from shared.settings import get_settings
    s = get_settings()
    monkeypatch.setattr(s, "STORAGE_QUOTA_BYTES", 1000)
    monkeypatch.setattr(s, "MAX_FILES_PER_USER", 3)
    u = users()
    token = u["access_token"]
    a, b, c = b"a" * 400, b"b" * 400, b"c" * 300
    assert upload(client, token, a, "a.txt").status_code == 202
    assert upload(client, token, a, "again.txt").status_code == 200  # the same content: counted once
    assert upload(client, token, b, "b.txt").status_code == 202
    r = upload(client, token, c, "c.txt")
    assert r.status_code == 413, r.get_json()
    assert r.get_json()["error"]["code"] == "quota_exceeded"
    assert r.get_json()["error"]["details"] == {"resource": "bytes", "used": 800, "limit": 1000, "size": 300}
    assert not (Path(s.STORAGE_DIR) / "files" / u["id"] / hashlib.sha256(c).hexdigest()).exists()
    with app.app_context():  # a clip a speech job made for this user
        with write_tx():
            db.session.add(AudioClip(user_id=u["id"], voice="v", format="wav", content_type="audio/wav", size=150,
                                     duration=1.0, storage_key=f"audio/{u['id']}/clip.wav"))
        db.session.remove()
    r = upload(client, token, b"d" * 100, "d.txt")
    assert r.status_code == 413 and r.get_json()["error"]["details"]["used"] == 950
    assert upload(client, token, b"e" * 50, "e.txt").status_code == 202  # exactly full
    r = upload(client, token, b"f", "f.txt")
    assert r.status_code == 413 and r.get_json()["error"]["details"] == {"resource": "files", "used": 3, "limit": 3}
    assert upload(client, token, b, "b-again.txt").status_code == 200  # full, and yet the file it has
    r = client.post("/api/tts", headers=bearer(token), json={"text": "no room for this"})
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "quota_exceeded"


def test_concurrent_uploads_never_pass_the_quota(app, users, monkeypatch):
    """Eight uploads of one user at once, with room for three files: three are taken, five refused."""
    from shared.settings import get_settings
    monkeypatch.setattr(get_settings(), "MAX_FILES_PER_USER", 3)
    u = users()
    start = threading.Barrier(8)
    statuses = []

    def send(n: int):
        c = app.test_client()
        start.wait()
        statuses.append(upload(c, u["access_token"], f"race {n} {os.urandom(8).hex()}".encode(), "r.txt",
                               REMOTE_ADDR="10.252.0.1").status_code)
    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [202] * 3 + [413] * 5, statuses
    # Own files only: the listing also shows other users' public files (earlier tests make some).
    listed = app.test_client().get("/api/files?scope=personal", headers=bearer(u["access_token"])).get_json()
    assert listed["total"] == 3 and all(f["scope"] == "personal" for f in listed["items"]), listed
