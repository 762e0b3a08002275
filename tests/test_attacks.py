"""Attacks, each a test. Those already shown elsewhere are not repeated here; ATTACKS_COVERED_ELSEWHERE
maps them to the tests that show them, and a test below checks that those tests still exist."""
from __future__ import annotations

import importlib
import io
import time
import uuid

import requests

from tests.support import bearer, wait_for_state

# attack -> the existing tests that show the product withstands it
ATTACKS_COVERED_ELSEWHERE = {
    "another user's job id (GET, DELETE, events; listing)": ["test_jobs::test_job_record_and_ownership"],
    "a signed job URL used for another job, tampered or expired": [
        "test_jobs::test_signed_urls_are_bound_to_user_and_job_and_expire"],
    "another user's conversation id (history, rename, delete, send into it)": [
        "test_chat::test_conversations_are_private_renamable_and_deletable",
        "test_chat::test_bad_input_is_refused_and_stores_nothing"],
    "another user's file id (record, download, delete, search)": ["test_files::test_ownership_and_public_scope"],
    "another user's audio id": ["test_speech::test_tts_job_makes_real_audio_served_to_its_owner_only"],
    "another user's Idempotency-Key": ["test_chat::test_idempotency_key"],
    "missing, garbage and revoked tokens on every protected route": [
        "test_user_admin::test_every_protected_route_refuses_missing_bad_and_revoked_tokens"],
    "refresh token as access token and the reverse; a spent refresh token": ["test_auth::test_login_refresh_logout"],
    "tokens after a password reset or change, a disabled or deleted account": [
        "test_auth::test_reset_password_revokes_every_token", "test_user_admin::test_change_password",
        "test_user_admin::test_a_disabled_user_is_refused_at_once",
        "test_user_admin::test_delete_account_erases_the_user_and_everything_they_own"],
    "login brute force on one account from one address (growing delays, no lockout)": [
        "test_auth::test_login_brute_force_gets_growing_delays_without_locking_the_victim_out"],
    "code brute force (5 guesses per code), a code of another purpose": [
        "test_auth::test_a_code_allows_five_guesses", "test_auth::test_a_code_is_bound_to_its_purpose"],
    "sign-up enumeration, code mail flooding": [
        "test_auth::test_send_code_answers_the_same_for_unknown_and_known_addresses",
        "test_auth::test_send_code_is_throttled_per_address_and_purpose"],
    "mass assignment: role/email/id in profile PUT, role in register, role in chat send": [
        "test_user_admin::test_profile_refuses_fields_outside_the_list_by_name",
        "test_auth::test_register_creates_a_student_and_refuses_a_chosen_role",
        "test_chat::test_bad_input_is_refused_and_stores_nothing"],
    "oversize and malformed JSON bodies, wrong content type": ["test_http::test_errors_have_one_shape",
                                                               "test_chat::test_bad_input_is_refused_and_stores_nothing"],
    "hostile uploads: path traversal names, lying extension, zip bomb, encrypted PDF, oversize": [
        "test_files::test_hostile_uploads", "test_files::test_extension_lies"],
    "CORS preflight from a foreign origin": ["test_http::test_cors_allows_configured_origins_only"],
    "request-id header injection": ["test_http::test_request_id_is_echoed_or_made"],
    "a production start with default, missing or short secrets": [
        "test_settings::test_production_refuses_weak_secrets"],
    "Flower without credentials (pages, API, /metrics, /healthcheck, static), its password in `ps`": [
        "test_ops::test_flower_wants_its_credentials_on_every_path_and_keeps_them_off_its_command_line",
        "test_ops::test_flower_refuses_credentials_on_its_command_line_and_a_start_without_them"],
}


def test_the_tests_named_for_covered_attacks_exist():
    for attack, tests in ATTACKS_COVERED_ELSEWHERE.items():
        for name in tests:
            module, func = name.split("::")
            assert hasattr(importlib.import_module(f"tests.{module}"), func), (attack, name)


# --- another user's ids: what the tests above do not show ---

def test_every_route_that_takes_an_id_is_covered(client):
    """A new route with an id in its path must get an ownership test (listed here or above)."""
    spec = client.get("/api/openapi.json").get_json()
    with_ids = {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops if "{" in p}
    shown = {
        "GET /api/jobs/{job_id}", "DELETE /api/jobs/{job_id}", "GET /api/jobs/{job_id}/events",  # test_jobs
        # test_chat
        "PATCH /api/chat/conversations/{conversation_id}", "DELETE /api/chat/conversations/{conversation_id}",
        "GET /api/files/{file_id}", "DELETE /api/files/{file_id}", "GET /api/files/{file_id}/download",  # test_files
        "GET /api/audio/{audio_id}",  # test_speech
        "PATCH /api/admin/users/{user_id}",  # below
    }
    assert with_ids <= shown, f"routes with an id and no ownership test: {sorted(with_ids - shown)}"


def test_a_student_cannot_touch_another_user_through_the_admin_routes(client, users):
    a, b = users(), users()
    r = client.patch(f"/api/admin/users/{a['id']}", headers=bearer(b["access_token"]), json={"status": "disabled"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    r = client.patch(f"/api/admin/users/{b['id']}", headers=bearer(b["access_token"]), json={"role": "admin"})
    assert r.status_code == 403
    assert client.get("/api/user/profile", headers=bearer(a["access_token"])).get_json()["status"] == "active"
    assert client.get("/api/user/profile", headers=bearer(b["access_token"])).get_json()["role"] == "student"


def test_signed_file_urls_are_bound_to_their_file_and_cursors_to_their_conversation(client, users):
    a, b = users(), users()
    files = []
    for text in (b"A's first private note on ferns.", b"A's second private note on mosses."):
        r = client.post("/api/upload/file", headers=bearer(a["access_token"]),
                        data={"file": (io.BytesIO(text), "note.txt")}, content_type="multipart/form-data")
        assert r.status_code == 202
        wait_for_state(client, r.get_json()["job_id"], a["access_token"], timeout=60)
        file_id = r.get_json()["file"]["id"]
        files.append(client.get(f"/api/files/{file_id}", headers=bearer(a["access_token"])).get_json())
    first, second = files
    sig = first["download_url"].split("sig=", 1)[1]
    r = client.get(f"/api/files/{second['id']}/download?sig={sig}")  # a signature moved to another file
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_signature"
    r = client.get(f"/api/files/{second['id']}/download?sig={sig[:-3]}abc")
    assert r.status_code == 401
    # B's own conversation, paged with a cursor taken from A's: refused without saying anything about A's.
    sent_a = client.post("/api/chat/send", headers=bearer(a["access_token"]), json={"message": "mine"}).get_json()
    sent_b = client.post("/api/chat/send", headers=bearer(b["access_token"]), json={"message": "yours"}).get_json()
    r = client.get("/api/chat/history", headers=bearer(b["access_token"]),
                   query_string={"conversation_id": sent_b["conversation_id"], "before": sent_a["message_id"]})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_cursor"
    assert "mine" not in r.get_data(as_text=True)


# --- forged tokens ---

def _claims(user: dict, **over) -> dict:
    now = int(time.time())
    return {"sub": user["id"], "jti": uuid.uuid4().hex, "type": "access", "fresh": False, "iat": now, "nbf": now,
            "exp": now + 600, "ver": 0, "rjti": uuid.uuid4().hex, "role": "admin", **over}


def test_forged_tokens_are_refused(client, users):
    import base64
    import json

    import jwt

    from shared.settings import get_settings
    u, other = users(), users()
    key = get_settings().JWT_SECRET_KEY

    def unsigned(claims):  # alg "none": header.payload. with no signature
        enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
        return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims)}."

    real = u["access_token"]
    head, payload, signature = real.split(".")
    padded = payload + "=" * (-len(payload) % 4)
    swapped = json.loads(base64.urlsafe_b64decode(padded))
    swapped["sub"] = other["id"]
    tampered = ".".join([head, base64.urlsafe_b64encode(json.dumps(swapped).encode()).rstrip(b"=").decode(), signature])
    cases = {
        "alg none": (unsigned(_claims(u)), "invalid_token"),
        "alg none, signature kept": (unsigned(_claims(u)) + signature, "invalid_token"),
        "wrong key": (jwt.encode(_claims(u), "not-the-key-" + uuid.uuid4().hex, algorithm="HS256"), "invalid_token"),
        "the app's SECRET_KEY": (jwt.encode(_claims(u), get_settings().SECRET_KEY, algorithm="HS256"), "invalid_token"),
        "right key, HS512": (jwt.encode(_claims(u), key, algorithm="HS512"), "invalid_token"),
        "payload swapped to another user": (tampered, "invalid_token"),
        "expired": (jwt.encode(_claims(u, exp=int(time.time()) - 5, iat=int(time.time()) - 700,
                                       nbf=int(time.time()) - 700), key, algorithm="HS256"), "token_expired"),
        "an old token version": (jwt.encode(_claims(u, ver=-1), key, algorithm="HS256"), "token_revoked"),
        "a user that does not exist": (jwt.encode(_claims(u, sub=uuid.uuid4().hex), key, algorithm="HS256"),
                                       "token_revoked"),
    }
    for name, (token, code) in cases.items():
        r = client.get("/api/user/profile", headers=bearer(token))
        assert r.status_code == 401, (name, r.get_json())
        assert r.get_json()["error"]["code"] == code, (name, r.get_json())
    assert client.get("/api/user/profile", headers=bearer(real)).status_code == 200


# --- sign-in throttling beyond one account from one address ---

def _age_failures(email: str, ip: str, seconds: float) -> None:
    """Move this email's and address's last failure back in time: the counters stay real."""
    from api.services import login_throttle
    from shared.redis_client import get_redis
    r = get_redis()
    for key in login_throttle.sign_in.keys(email, ip).values():
        if r.hget(key, "t"):
            r.hset(key, "t", float(r.hget(key, "t")) - seconds)


def test_password_spraying_from_one_address_gets_growing_delays(app, users):
    """Many accounts, one guess each, from one address: the per-address delay grows (the
    per-account ones never start)."""
    targets = [users() for _ in range(3)]
    ip = f"10.61.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = ip
    delays, emails = [], []
    for n in range(27):
        email = targets[n % 3]["email"] if n % 2 else f"nobody-{uuid.uuid4().hex[:8]}@example.com"
        emails.append(email)
        r = attacker.post("/api/auth/login", json={"email": email, "password": "Spring2026!!"})
        if r.status_code == 429:
            assert r.get_json()["error"]["code"] == "too_many_attempts"
            delays.append(int(r.headers["Retry-After"]))
            for e in set(emails):
                _age_failures(e, ip, 10_000)
        else:
            assert r.status_code == 401, r.get_json()
    assert len(delays) >= 2 and delays == sorted(delays) and delays[-1] > delays[0], delays
    # A real user elsewhere is not affected.
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.62.0.1"
    r = elsewhere.post("/api/auth/login", json={"email": targets[0]["email"], "password": targets[0]["password"]})
    assert r.status_code == 200


def test_distributed_guessing_on_one_account_is_capped_and_never_locks_the_owner_out(app, users):
    """One account, guesses from many addresses: the per-account delay grows to at most 60 s;
    the owner, from an address of their own, signs in once it has passed."""
    from api.services.login_throttle import ACCOUNT_MAX_DELAY
    victim = users()
    delays = []
    for n in range(20):
        ip = f"10.63.{n}.{uuid.uuid4().int % 250}"
        c = app.test_client()
        c.environ_base["REMOTE_ADDR"] = ip
        r = c.post("/api/auth/login", json={"email": victim["email"], "password": f"guess number {n}"})
        if r.status_code == 429:
            delays.append(int(r.headers["Retry-After"]))
            _age_failures(victim["email"], ip, 10_000)  # the account's own counter moves with it
            r = c.post("/api/auth/login", json={"email": victim["email"], "password": f"guess number {n}"})
        assert r.status_code == 401, r.get_json()
    assert delays and delays == sorted(delays) and max(delays) <= ACCOUNT_MAX_DELAY, delays
    owner = app.test_client()
    owner.environ_base["REMOTE_ADDR"] = "10.64.0.1"
    r = owner.post("/api/auth/login", json={"email": victim["email"], "password": victim["password"]})
    if r.status_code == 429:  # at most a minute's wait, never a lockout
        assert int(r.headers["Retry-After"]) <= ACCOUNT_MAX_DELAY
        _age_failures(victim["email"], "10.64.0.1", ACCOUNT_MAX_DELAY + 1)
        r = owner.post("/api/auth/login", json={"email": victim["email"], "password": victim["password"]})
    assert r.status_code == 200, r.get_json()


# --- mass assignment beyond the fields shown elsewhere ---

def test_mass_assignment_of_internal_fields_is_refused_by_name(client, users):
    u = users()
    h = bearer(u["access_token"])
    for body, fields in [
        ({"bio": "x", "password_hash": "x", "token_version": 0}, ("password_hash", "token_version")),
        ({"status": "active", "email_verified_at": "2020-01-01T00:00:00Z"}, ("status", "email_verified_at")),
    ]:
        r = client.put("/api/user/profile", headers=h, json=body)
        assert r.status_code == 400, r.get_json()
        assert all(f in r.get_json()["error"]["message"] for f in fields), r.get_json()
    r = client.post("/api/auth/register", json={"email": "x@example.com", "password": "a fine passphrase",
                                                "code": "123456", "status": "active", "token_version": 7})
    assert r.status_code == 400 and "status" in r.get_json()["error"]["message"]
    r = client.post("/api/chat/send", headers=h, json={"message": "hi", "options": {"model": "gpt-5"}})
    assert r.status_code == 400 and "model" in r.get_json()["error"]["message"]
    assert client.get("/api/user/profile", headers=h).get_json()["bio"] is None


# --- malformed bodies beyond those shown elsewhere ---

def _error_shape(r, status):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:300])
    body = r.get_json()
    assert set(body) == {"error"} and {"code", "message", "details"} == set(body["error"])
    return body["error"]


def test_malformed_json_bodies_get_400_in_the_error_shape(client, users):
    u = users()
    h = {**bearer(u["access_token"]), "Content-Type": "application/json"}
    bodies = {
        "an unknown field with an empty name": b'{"": null}',
        "an unknown empty-named field beside a known one": b'{"bio": "x", "": 1}',
        "deep nesting": b'{"bio": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "invalid UTF-8": b'{"bio": "\xff\xfe"}',
        "NaN": b'{"bio": NaN}',
        "a bare string": b'"bio"',
        "a number": b"12",
        "null": b"null",
        "a truncated object": b'{"bio": "x"',
        "a huge number": b'{"bio": ' + b"9" * 5000 + b"}",
    }
    for name, raw in bodies.items():
        r = client.put("/api/user/profile", headers=h, data=raw)
        err = _error_shape(r, 400)
        assert err["code"] in {"malformed_json", "validation_error"}, (name, err)
    # Well-formed, but a NUL inside a string: refused, on every body (PostgreSQL text cannot hold
    # NUL: it used to fail there as a 500).
    for method, path, raw in [("PUT", "/api/user/profile", b'{"bio": "a\\u0000b"}'),
                              ("POST", "/api/chat/send", b'{"message": "hi\\u0000"}'),
                              ("POST", "/api/knowledge/search", b'{"query": "\\u0000"}'),
                              ("POST", "/api/auth/login", b'{"email": "a@example.com", "password": "x\\u0000y"}')]:
        err = _error_shape(client.open(path, method=method, headers=h, data=raw), 400)
        assert err["code"] == "validation_error" and "NUL" in str(err["details"]), err


def test_an_oversize_chunked_body_without_length_is_refused(live_server):
    """No Content-Length to check up front: the server reads at most MAX_CONTENT_LENGTH (1 MiB)
    of a chunked body. Werkzeug cuts the stream there, so the JSON is incomplete: 400 in the error
    shape (a 413 needs a Content-Length; test_http shows that one)."""
    def chunks():
        for _ in range(3 * 1024):  # 3 MiB in 1 KiB pieces
            yield b"x" * 1024
    r = requests.post(f"{live_server}/api/auth/login", data=chunks(), timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 413), r.text[:300]
    assert r.json()["error"]["code"] in ("malformed_json", "request_entity_too_large")


# --- CORS on real requests ---

def test_foreign_origins_get_no_cors_grant_on_real_requests(client, users):
    u = users()
    for origin in ("http://evil.test", "null", "http://frontend.test.evil.test", "http://evil.test/http://frontend.test",
                   "https://frontend.test"):
        for method, path in (("GET", "/api/user/profile"), ("POST", "/api/auth/login")):
            r = client.open(path, method=method, headers={**bearer(u["access_token"]), "Origin": origin},
                            json={"email": u["email"], "password": "wrong password!"} if method == "POST" else None)
            assert "Access-Control-Allow-Origin" not in r.headers, (origin, path)
            assert "Access-Control-Allow-Credentials" not in r.headers
    r = client.get("/api/user/profile", headers={**bearer(u["access_token"]), "Origin": "http://frontend.test"})
    assert r.headers["Access-Control-Allow-Origin"] == "http://frontend.test"


def test_huge_paging_offsets_are_400_not_500(client, users):
    """An offset past any integer the database takes (SQLite: 64 bits) is refused as invalid input."""
    u = users()
    huge = "9" * 30
    answers = {path: client.get(path, headers=bearer(u["access_token"]), query_string={"offset": huge}).status_code
               for path in ("/api/jobs", "/api/files", "/api/chat/conversations", "/api/admin/users")}
    assert all(status == 400 for status in answers.values()), answers


def test_ids_with_nul_or_over_long_are_404_on_every_route_that_takes_one(client, users):
    """A NUL in a path id would reach PostgreSQL as a driver error (500): every route taking an id
    answers 404 in the error shape for a NUL, a bare NUL, an over-long value, and an unknown id."""
    u = users()
    spec = client.get("/api/openapi.json").get_json()
    routes = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if "{" in p]
    assert len(routes) >= 10, routes
    answers = {}
    for method, path in routes:
        body = ({"status": "active"} if "/users/" in path else {"title": "x"}) if method == "PATCH" else None
        for bad in ("abc%00def", "%00", "0" * 65, "f" * 32):
            url = path.split("{", 1)[0] + bad + path.split("}", 1)[1]
            r = client.open(url, method=method, headers=bearer(u["access_token"]), json=body)
            answers[f"{method} {url}"] = (r.status_code, (r.get_json(silent=True) or {}).get("error", {}).get("code"))
    # The admin route refuses a student before looking the (well-formed, unknown) id up.
    wrong = {k: v for k, v in answers.items()
             if v != (404, "not_found") and not (v == (403, "forbidden") and k.endswith("f" * 32))}
    assert not wrong, wrong
