"""Sign-in sessions and signed URLs, from outside: token families, links that end with their
session or account and never renew themselves, JWT error texts, token answers not stored.
"""
from __future__ import annotations

import io
import shutil
import time
import uuid

import pytest

from tests.support import bearer, parse_sse, request_code, wait_for_state


def login(client, u) -> dict:
    r = client.post("/api/auth/login", json={"email": u["email"], "password": u["password"]})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def refused(client, tokens: dict) -> bool:
    """Both tokens of a pair are refused as revoked."""
    a = client.get("/api/user/profile", headers=bearer(tokens["access_token"]))
    r = client.post("/api/auth/refresh", headers=bearer(tokens["refresh_token"]))
    return (a.status_code, r.status_code) == (401, 401) and a.get_json()["error"]["code"] == "token_revoked"


def test_reuse_of_a_spent_refresh_token_ends_its_whole_family(client, users):
    victim = users()
    r = client.post("/api/auth/refresh", headers=bearer(victim["refresh_token"]))  # the attacker, with R1
    assert r.status_code == 200
    stolen = r.get_json()
    assert client.get("/api/user/profile", headers=bearer(stolen["access_token"])).status_code == 200
    r = client.post("/api/auth/refresh", headers=bearer(victim["refresh_token"]))  # the victim, later, with R1
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_revoked"
    assert refused(client, stolen) and refused(client, victim)
    assert client.get("/api/user/profile", headers=bearer(login(client, victim)["access_token"])).status_code == 200


def test_logout_ends_every_token_of_its_session_and_no_other(client, users):
    u = users()
    other_session = login(client, u)
    r = client.post("/api/auth/refresh", headers=bearer(u["refresh_token"]))
    assert r.status_code == 200
    rotated = r.get_json()
    assert client.post("/api/auth/logout", headers=bearer(u["access_token"])).status_code == 200  # with A1
    assert refused(client, rotated)  # R2 and A2 of the same family
    assert client.get("/api/user/profile", headers=bearer(other_session["access_token"])).status_code == 200
    assert client.post("/api/auth/refresh", headers=bearer(other_session["refresh_token"])).status_code == 200


def test_a_token_from_before_sessions_is_its_own_family(client, users):
    import jwt

    from shared.settings import get_settings
    u = users()
    now, family, key = int(time.time()), uuid.uuid4().hex, get_settings().JWT_SECRET_KEY
    base = {"sub": u["id"], "fresh": False, "iat": now, "nbf": now, "exp": now + 600, "ver": 0}
    access = jwt.encode({**base, "type": "access", "jti": uuid.uuid4().hex, "rjti": family, "role": "student"},
                        key, algorithm="HS256")
    refresh = jwt.encode({**base, "type": "refresh", "jti": family}, key, algorithm="HS256")
    assert client.get("/api/user/profile", headers=bearer(access)).status_code == 200
    assert client.post("/api/auth/logout", headers=bearer(access)).status_code == 200
    assert refused(client, {"access_token": access, "refresh_token": refresh})
    assert client.get("/api/user/profile", headers=bearer(u["access_token"])).status_code == 200


def _chat(client, token, **options) -> dict:
    r = client.post("/api/chat/send", headers=bearer(token), json={"message": "What is a fraction?",
                                                                    "options": {"use_knowledge": False, **options}})
    assert r.status_code == 202, r.get_json()
    return r.get_json()


def test_a_signed_read_answers_without_signatures(client, smtp, users):
    u = users()
    sent = _chat(client, u["access_token"])
    assert "sig=" in sent["status_url"] and "sig=" in sent["events_url"]
    wait_for_state(client, sent["job_id"], u["access_token"])
    r = client.get(sent["status_url"])  # no header: the signature authorises it
    assert r.status_code == 200, r.get_json()
    job = r.get_json()
    assert "sig=" not in r.get_data(as_text=True)
    assert job["status_url"].endswith(f"/api/jobs/{sent['job_id']}")
    assert job["events_url"].endswith(f"/api/jobs/{sent['job_id']}/events")
    assert client.get(job["status_url"]).status_code == 401  # a plain URL is no key
    # Read with the Bearer token, the job's URLs are signed; so is an anonymous job's envelope, for that job.
    by_bearer = client.get(f"/api/jobs/{sent['job_id']}", headers=bearer(u["access_token"])).get_json()
    assert "sig=" in by_bearer["status_url"]
    r = client.post("/api/auth/send-code", json={"email": f"x-{uuid.uuid4().hex[:8]}@example.com",
                                                 "purpose": "register"})
    anonymous = r.get_json()
    r = client.get(anonymous["status_url"])
    assert r.status_code == 200 and "sig=" not in r.get_data(as_text=True)
    sig = anonymous["status_url"].split("sig=", 1)[1]
    assert client.get(f"/api/jobs/{sent['job_id']}?sig={sig}").status_code == 401
    # An anonymous signature is for ownerless jobs only, never a file or audio, even if well made.
    from shared.signing import ANONYMOUS, sign
    up = client.post("/api/upload/file", headers=bearer(u["access_token"]), content_type="multipart/form-data",
                     data={"file": (io.BytesIO(b"Anonymous links open no files."), "anon.txt")}).get_json()
    file_id = up["file"]["id"]
    r = client.get(f"/api/files/{file_id}/download?sig={sign(ANONYMOUS, f'file:{file_id}')}")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_signature"


def _disable(app, client, users, u):
    from tests.test_user_admin import make_admin
    admin = make_admin(app, users)
    r = client.patch(f"/api/admin/users/{u['id']}", headers=bearer(admin["access_token"]), json={"status": "disabled"})
    assert r.status_code == 200, r.get_json()


def _reset(client, smtp, u):
    code = request_code(client, smtp, u["email"], "reset_password", nth=2)
    r = client.post("/api/auth/reset-password", json={"email": u["email"], "code": code,
                                                      "new_password": "a brand new passphrase"})
    assert r.status_code == 200, r.get_json()


def _delete(client, smtp, u):
    code = request_code(client, smtp, u["email"], "delete_account", nth=2)
    assert client.delete("/api/user/account", headers=bearer(u["access_token"]), json={"code": code}).status_code == 200


ENDINGS = {
    "logout": lambda app, client, smtp, users, u: client.post("/api/auth/logout", headers=bearer(u["access_token"])),
    "password change": lambda app, client, smtp, users, u: client.post(
        "/api/user/password", headers=bearer(u["access_token"]),
        json={"current_password": u["password"], "new_password": "another long passphrase"}),
    "password reset": lambda app, client, smtp, users, u: _reset(client, smtp, u),
    "account disabled": lambda app, client, smtp, users, u: _disable(app, client, users, u),
    "account deleted": lambda app, client, smtp, users, u: _delete(client, smtp, u),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_signed_links_end_with_their_session_and_account(app, client, smtp, users, ending):
    u = users()
    h = bearer(u["access_token"])
    sent = _chat(client, u["access_token"])
    up = client.post("/api/upload/file", headers=h, data={"file": (io.BytesIO(b"Notes on owls."), "owls.txt")},
                     content_type="multipart/form-data")
    assert up.status_code == 202, up.get_json()
    download = client.get(f"/api/files/{up.get_json()['file']['id']}", headers=h).get_json()["download_url"]
    wait_for_state(client, sent["job_id"], u["access_token"])
    wait_for_state(client, up.get_json()["job_id"], u["access_token"], timeout=60)
    links = [sent["status_url"], sent["events_url"], download]
    assert [client.get(link).status_code for link in links] == [200, 200, 200]
    ENDINGS[ending](app, client, smtp, users, u)
    answers = [client.get(link) for link in links]
    assert [a.status_code for a in answers] == [401, 401, 401], [a.get_json() for a in answers]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is missing: run scripts/ensure-tts")
def test_urls_the_worker_signs_end_with_the_session(client, users):
    u = users()
    sent = _chat(client, u["access_token"], tts=True)
    wait_for_state(client, sent["job_id"], u["access_token"])
    events = parse_sse(client.get(sent["events_url"]).get_data(as_text=True))
    speech = next(e["data"] for e in events if e["event"] == "speech")
    assert "sig=" in speech["status_url"]
    wait_for_state(client, speech["job_id"], u["access_token"], timeout=60)
    speech_events = parse_sse(client.get(speech["events_url"]).get_data(as_text=True))
    audio = [e["data"]["audio_url"] for e in speech_events if e["event"] == "audio"]
    audio.append(speech_events[-1]["data"]["result"]["audio_url"])  # the whole reply's, in `done`
    links = [speech["status_url"], speech["events_url"], *audio]
    assert all("sig=" in link for link in links)
    assert {client.get(link).status_code for link in links} == {200}
    assert client.post("/api/auth/logout", headers=bearer(u["access_token"])).status_code == 200
    assert {client.get(link).status_code for link in links} == {401}


def test_jwt_errors_answer_fixed_messages(client, users):
    import jwt

    from shared.settings import get_settings
    u = users()
    now = int(time.time())
    claims = {"sub": u["id"], "jti": uuid.uuid4().hex, "type": "access", "iat": now, "nbf": now, "exp": now + 60,
              "ver": 0, "sid": uuid.uuid4().hex}
    key = get_settings().JWT_SECRET_KEY
    cases = [  # (path, Authorization header, code)
        ("/api/user/profile", "Bearer not.a.jwt", "invalid_token"),
        ("/api/user/profile", "Bearer abc", "invalid_token"),
        ("/api/user/profile", "Bearer " + jwt.encode(claims, "another-key-" + uuid.uuid4().hex, algorithm="HS256"),
         "invalid_token"),
        ("/api/user/profile", "Bearer " + u["refresh_token"], "invalid_token"),
        ("/api/auth/refresh", "Bearer " + u["access_token"], "invalid_token"),
        ("/api/user/profile", "Bearer " + jwt.encode({**claims, "exp": now - 5, "iat": now - 100, "nbf": now - 100},
                                                     key, algorithm="HS256"), "token_expired"),
        ("/api/user/profile", "Bearer " + jwt.encode({**claims, "ver": -1}, key, algorithm="HS256"), "token_revoked"),
        ("/api/user/profile", None, "missing_token"),
        ("/api/user/profile", "Basic dXNlcjpwYXNz", "missing_token"),
        ("/api/user/profile", "Bearer", "invalid_token"),
    ]
    seen: dict[str, set] = {}
    for path, header, code in cases:
        method = client.post if path == "/api/auth/refresh" else client.get
        r = method(path, headers={"Authorization": header} if header else {})
        err = r.get_json()["error"]
        assert r.status_code == 401 and err["code"] == code, (header, err)
        seen.setdefault(code, set()).add(err["message"])
        for library_text in ("segments", "Signature verification", "Only", "Missing", "header", "decode", "padding"):
            assert library_text not in err["message"], (header, err)
    assert all(len(messages) == 1 for messages in seen.values()), seen


def test_token_answers_are_never_stored(client, users):
    u = users()
    r = client.post("/api/auth/refresh", headers=bearer(u["refresh_token"]))
    answers = [client.post("/api/auth/login", json={"email": u["email"], "password": u["password"]}), r,
               client.post("/api/user/password", headers=bearer(r.get_json()["access_token"]),
                           json={"current_password": u["password"], "new_password": "another long passphrase"})]
    for a in answers:
        assert a.status_code == 200 and a.get_json()["access_token"]
        assert a.headers["Cache-Control"] == "no-store" and a.headers["Pragma"] == "no-cache"
