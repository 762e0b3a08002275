"""Uploads, processing by the real worker, search, download, delete, and hostile files."""
from __future__ import annotations

import hashlib
import io

import pytest

from shared.payloads import FilePayload
from tests import documents
from tests.support import bearer, parse_sse, wait_for_state

TOPICS = [
    "Photosynthesis converts light energy into chemical energy stored in glucose inside chloroplasts.",
    "The French Revolution began in 1789 with the storming of the Bastille in Paris.",
    "Newton's second law states that force equals mass times acceleration.",
]


def upload(client, token, content: bytes, name: str, scope: str | None = None):
    data = {"file": (io.BytesIO(content), name)}
    if scope:
        data["scope"] = scope
    return client.post("/api/upload/file", headers=bearer(token), data=data, content_type="multipart/form-data")


def upload_ready(client, token, content, name, scope=None) -> dict:
    r = upload(client, token, content, name, scope)
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    job = wait_for_state(client, body["job_id"], token, timeout=60)
    assert job["state"] == "succeeded", job
    return client.get(f"/api/files/{body['file']['id']}", headers=bearer(token)).get_json()


def search(client, token, query, **kw):
    r = client.post("/api/knowledge/search", headers=bearer(token), json={"query": query, **kw})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["hits"]


def test_pdf_is_processed_page_by_page_and_searchable(client, users):
    u = users()
    content = documents.pdf(TOPICS)
    r = upload(client, u["access_token"], content, "lecture.pdf")
    assert r.status_code == 202
    body = r.get_json()
    f = body["file"]
    assert (f["name"], f["size"], f["content_type"], f["scope"]) == ("lecture.pdf", len(content), "application/pdf",
                                                                     "personal")
    assert f["sha256"] == hashlib.sha256(content).hexdigest() and f["status"] == "processing"
    wait_for_state(client, body["job_id"], u["access_token"], timeout=60)
    f = client.get(f"/api/files/{f['id']}", headers=bearer(u["access_token"])).get_json()
    assert f["status"] == "ready" and f["page_count"] == 3 and f["chunk_count"] >= 3
    events = parse_sse(client.get(body["events_url"]).get_data(as_text=True))
    assert [e["data"]["page"] for e in events if e["data"].get("stage") == "extracting"] == [1, 2, 3]
    hits = search(client, u["access_token"], "When did the French Revolution start?")
    assert hits[0]["file_id"] == f["id"] and hits[0]["page"] == 2 and "Bastille" in hits[0]["text"]
    assert {"file_id", "file_name", "page", "text", "score"} <= hits[0].keys()
    hits = search(client, u["access_token"], "how do plants make sugar from sunlight")
    assert hits[0]["page"] == 1


def test_docx_text_markdown_and_html(client, users):
    u = users()
    cases = [
        (documents.docx(["Mitochondria are the powerhouse of the cell."]), "bio.docx", "wordprocessingml"),
        (b"# Algebra\n\nA quadratic equation has at most two real roots.", "notes.md", "text/markdown"),
        (b"Plain text about tectonic plates and earthquakes.", "geo.txt", "text/plain"),
        (b"<!doctype html><html><head><style>p{}</style><script>var x='zebra';</script></head>"
         b"<body><p>The Renaissance revived classical art.</p></body></html>", "art.html", "text/html"),
    ]
    for content, name, ctype in cases:
        f = upload_ready(client, u["access_token"], content, name)
        assert ctype in f["content_type"] and f["status"] == "ready", f
    assert search(client, u["access_token"], "powerhouse of the cell")[0]["file_name"] == "bio.docx"
    assert search(client, u["access_token"], "quadratic roots")[0]["file_name"] == "notes.md"
    assert search(client, u["access_token"], "Renaissance art")[0]["file_name"] == "art.html"
    assert all("zebra" not in h["text"] for h in search(client, u["access_token"], "zebra", k=50)), \
        "script content must not be indexed"


def test_images_and_audio_are_stored_not_indexed(client, users):
    u = users()
    for content, name, ctype in [(documents.PNG_1PX, "diagram.png", "image/png"),
                                 (documents.wav(), "lecture.wav", "audio/wav")]:
        f = upload_ready(client, u["access_token"], content, name)
        assert f["status"] == "stored" and f["content_type"] == ctype and f["chunk_count"] == 0


def test_same_content_twice_is_recognised(client, users):
    u = users()
    first = upload(client, u["access_token"], b"Unique text about volcanoes 42.", "a.txt").get_json()
    again = upload(client, u["access_token"], b"Unique text about volcanoes 42.", "b.txt")
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert again.get_json()["file"]["id"] == first["file"]["id"]
    listed = client.get("/api/files", headers=bearer(u["access_token"])).get_json()
    assert listed["total"] == 1


def test_extension_lies(client, users):
    u = users()
    f = upload_ready(client, u["access_token"], documents.pdf(["Really a PDF about graphs."]), "notes.txt")
    assert f["content_type"] == "application/pdf"
    r = upload(client, u["access_token"], b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200, "slides.pdf")
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "unsupported_file_type"
    r = upload(client, u["access_token"], b"PK\x03\x04" + b"\x00" * 100, "archive.docx")
    assert r.status_code == 415


def test_hostile_uploads(client, users, app):
    u = users()
    f = upload_ready(client, u["access_token"], b"Traversal test content.", "../../etc/passwd")
    assert f["name"] == "passwd"
    f = upload_ready(client, u["access_token"], b"Windows traversal.", "..\\..\\boot.ini")
    assert f["name"] == "boot.ini"
    r = upload(client, u["access_token"], b"", "empty.txt")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "empty_file"
    r = client.post("/api/upload/file", headers=bearer(u["access_token"]), data={},
                    content_type="multipart/form-data")
    assert r.status_code == 400
    from shared.settings import get_settings
    big = b"a" * (get_settings().UPLOAD_MAX_BYTES + 100 * 1024)
    r = upload(client, u["access_token"], big, "big.txt")
    assert r.status_code == 413 and r.get_json()["error"]["code"] in {"request_entity_too_large", "file_too_large"}
    # A zip bomb and an encrypted PDF are taken, then fail with the reason.
    for content, name, code in [(documents.zip_bomb_docx(), "bomb.docx", "unsafe_file"),
                                (documents.encrypted_pdf(), "locked.pdf", "encrypted_pdf")]:
        r = upload(client, u["access_token"], content, name)
        assert r.status_code == 202, r.get_json()
        job = wait_for_state(client, r.get_json()["job_id"], u["access_token"], timeout=60)
        assert job["state"] == "failed" and job["error"]["code"] == code, job
        f = client.get(f"/api/files/{r.get_json()['file']['id']}", headers=bearer(u["access_token"])).get_json()
        assert f["status"] == "failed" and f["error"]["code"] == code
    r = upload(client, u["access_token"], documents.pdf([""]), "blank.pdf")
    job = wait_for_state(client, r.get_json()["job_id"], u["access_token"], timeout=60)
    assert job["error"]["code"] == "no_text"


def test_ownership_and_public_scope(app, client, users):
    owner, other, tutor = users(), users(), users()
    f = upload_ready(client, owner["access_token"], b"Private diary about the krebs cycle.", "diary.txt")
    h = bearer(other["access_token"])
    assert client.get(f"/api/files/{f['id']}", headers=h).status_code == 404
    assert client.get(f"/api/files/{f['id']}/download", headers=h).status_code == 404
    assert client.delete(f"/api/files/{f['id']}", headers=h).status_code == 404
    assert f["id"] not in str(client.get("/api/files", headers=h).get_json())
    assert not [x for x in search(client, other["access_token"], "krebs cycle diary") if x["file_id"] == f["id"]]
    # A student cannot publish; a tutor can, and everyone finds it.
    r = upload(client, other["access_token"], b"Public notes", "p.txt", scope="public")
    assert r.status_code == 403
    from shared.database import db, write_tx
    from shared.models import User
    with app.app_context(), write_tx():
        db.session.get(User, tutor["id"]).role = "tutor"
    pub = upload_ready(client, tutor["access_token"], b"Shared notes on the water cycle and evaporation.", "w.txt",
                       scope="public")
    assert pub["scope"] == "public"
    hits = search(client, other["access_token"], "water cycle evaporation")
    assert hits and hits[0]["file_id"] == pub["id"]
    assert all(x["file_id"] != pub["id"]
               for x in search(client, other["access_token"], "water cycle evaporation", scope="personal"))
    assert client.get(f"/api/files/{pub['id']}/download", headers=h).status_code == 200
    assert client.delete(f"/api/files/{pub['id']}", headers=h).status_code == 403


def test_download_streams_with_range_and_signed_url(client, users):
    u = users()
    content = documents.pdf(["Range requests let audio and video seek."])
    f = upload_ready(client, u["access_token"], content, "range.pdf")
    r = client.get(f"/api/files/{f['id']}/download", headers=bearer(u["access_token"]))
    assert r.status_code == 200 and r.data == content and r.headers["Content-Type"] == "application/pdf"
    assert 'filename=range.pdf' in r.headers["Content-Disposition"]
    r = client.get(f"/api/files/{f['id']}/download", headers={**bearer(u["access_token"]), "Range": "bytes=10-19"})
    assert r.status_code == 206 and r.data == content[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(content)}"
    r = client.get(f["download_url"])  # no header: the signature is enough
    assert r.status_code == 200 and r.data == content


def test_delete_removes_blob_chunks_and_vectors(app, client, users):
    u = users()
    f = upload_ready(client, u["access_token"], b"Ephemeral text about ostrich migration patterns.", "gone.txt")
    assert search(client, u["access_token"], "ostrich migration")[0]["file_id"] == f["id"]
    from shared.database import db
    from shared.models import Chunk, File
    from shared.storage import get_storage
    with app.app_context():
        key = db.session.get(File, f["id"]).storage_key
    assert get_storage().exists(key)
    assert client.delete(f"/api/files/{f['id']}", headers=bearer(u["access_token"])).status_code == 200
    assert not get_storage().exists(key)
    with app.app_context():
        assert db.session.query(Chunk).filter_by(file_id=f["id"]).count() == 0
    assert not [h for h in search(client, u["access_token"], "ostrich migration") if h["file_id"] == f["id"]]
    assert client.get(f"/api/files/{f['id']}", headers=bearer(u["access_token"])).status_code == 404


def test_search_bad_input(client, users):
    u = users()
    for body in ({"query": ""}, {"query": "x", "k": 0}, {"query": "x", "k": 500}, {"query": "x", "scope": "everyone"}):
        r = client.post("/api/knowledge/search", headers=bearer(u["access_token"]), json=body)
        assert r.status_code == 400, body


@pytest.mark.parametrize("use_knowledge", [None, True])
def test_chat_answer_cites_the_right_page(client, users, use_knowledge):
    u = users()
    f = upload_ready(client, u["access_token"], documents.pdf(TOPICS), "course.pdf")
    body = {"message": "What does Newton's second law say about force?"}
    if use_knowledge is not None:
        body["options"] = {"use_knowledge": use_knowledge}
    r = client.post("/api/chat/send", headers=bearer(u["access_token"]), json=body)
    assert r.status_code == 202
    sent = r.get_json()
    job = wait_for_state(client, sent["job_id"], u["access_token"])
    citations = job["result"]["message"]["citations"]
    assert citations[0]["file_id"] == f["id"] and citations[0]["page"] == 3
    assert "force equals mass" in citations[0]["snippet"]
    history = client.get("/api/chat/history", headers=bearer(u["access_token"]),
                         query_string={"conversation_id": sent["conversation_id"]}).get_json()
    assert history["items"][-1]["citations"][0]["page"] == 3


def test_a_file_whose_job_is_cancelled_while_queued_is_failed_at_once(app, client, users):
    """No worker holds a queued job, so the cancel itself ends its file (`failed`, code cancelled)."""
    from shared.database import db, write_tx
    from shared.jobs import new_job
    from shared.models import File
    a = users()
    with app.app_context():
        with write_tx():  # a file whose job waits in no queue: no worker can have taken it
            f = File(user_id=a["id"], name="queued.txt", size=5, content_type="text/plain", sha256="0" * 64,
                     scope="personal", status="processing", storage_key=f"files/{a['id']}/{'0' * 64}")
            db.session.add(f)
            db.session.flush()
            job = new_job("file", a["id"], FilePayload(file_id=f.id, kind="txt"))
            f.job_id = job.id
        file_id, job_id = f.id, job.id
    r = client.delete(f"/api/jobs/{job_id}", headers=bearer(a["access_token"]))
    assert r.status_code == 200 and r.get_json()["state"] == "cancelled", r.get_json()
    record = client.get(f"/api/files/{file_id}", headers=bearer(a["access_token"])).get_json()
    assert record["status"] == "failed" and record["error"]["code"] == "cancelled", record
