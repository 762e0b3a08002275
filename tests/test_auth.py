"""The account lifecycle through the real API, worker, Redis and SMTP server."""
from __future__ import annotations

from tests.support import bearer, code_from, new_email, request_code


def test_send_code_mails_a_code_with_a_stable_message_id(client, smtp, worker):
    address = new_email()
    r = client.post("/api/auth/send-code", json={"email": address, "purpose": "register"})
    assert r.status_code == 202
    body = r.get_json()
    assert {"job_id", "status_url", "events_url", "message", "expires_in"} <= body.keys()
    mail = smtp.wait_for(address)[0]
    assert mail["Message-ID"] == f"<job-{body['job_id']}@tests.local>"
    assert len(code_from(mail)) == 6
    assert mail.get_body(preferencelist=("html",)) is not None
    # The anonymous job is readable through its signed URL only, and its payload keeps no code.
    job = client.get(body["status_url"]).get_json()
    assert job["kind"] == "mail"
    assert client.get(f"/api/jobs/{body['job_id']}").status_code == 401


def test_send_code_answers_the_same_for_unknown_and_known_addresses(client, smtp, users):
    known = users()["email"]
    unknown = new_email()
    answers = []
    for address in (known, unknown):
        r = client.post("/api/auth/send-code", json={"email": address, "purpose": "reset_password"})
        assert r.status_code == 202
        body = r.get_json()
        answers.append((body["message"], body["expires_in"], sorted(body)))
    assert answers[0] == answers[1]
    assert "no account" in smtp.wait_for(unknown)[0].get_body(preferencelist=("plain",)).get_content()


def test_register_with_existing_address_mails_a_notice_not_a_code(client, smtp, users):
    known = users()["email"]
    r = client.post("/api/auth/send-code", json={"email": known, "purpose": "register"})
    assert r.status_code == 202
    mails = smtp.wait_for(known, count=2)
    assert "already has an account" in mails[-1].get_body(preferencelist=("plain",)).get_content()


def test_register_creates_a_student_and_refuses_a_chosen_role(client, smtp, worker):
    address = new_email()
    code = request_code(client, smtp, address, "register")
    r = client.post("/api/auth/register", json={"email": address, "password": "a fine passphrase",
                                                "code": code, "role": "admin"})
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "validation_error"
    assert "role" in r.get_json()["error"]["message"]
    r = client.post("/api/auth/register", json={"email": address.upper(), "password": "a fine passphrase",
                                                "code": code, "username": "alice_" + address[5:11]})
    assert r.status_code == 201, r.get_json()
    user = r.get_json()
    assert user["role"] == "student" and user["email"] == address and user["email_verified_at"]
    # The code is spent.
    r = client.post("/api/auth/register", json={"email": address, "password": "a fine passphrase", "code": code})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_code"


def test_register_bad_input(client, smtp, worker):
    address = new_email()
    code = request_code(client, smtp, address, "register")
    cases = [
        ({"email": "not-an-email", "password": "a fine passphrase", "code": code}, 400, "validation_error"),
        ({"email": address, "password": "short", "code": code}, 400, "weak_password"),
        ({"email": address, "password": "a fine passphrase", "code": "12345"}, 400, "validation_error"),
        ({"email": address, "password": "a fine passphrase"}, 400, "validation_error"),
    ]
    for body, status, code_name in cases:
        r = client.post("/api/auth/register", json=body)
        assert r.status_code == status, (body, r.get_json())
        assert r.get_json()["error"]["code"] == code_name


def test_a_code_allows_five_guesses(client, smtp, worker):
    address = new_email()
    code = request_code(client, smtp, address, "register")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        r = client.post("/api/auth/register", json={"email": address, "password": "a fine passphrase", "code": wrong})
        assert r.status_code == 400
    r = client.post("/api/auth/register", json={"email": address, "password": "a fine passphrase", "code": code})
    assert r.status_code == 400, "the right code after five wrong guesses must be refused"


def test_a_code_is_bound_to_its_purpose(client, smtp, users):
    u = users()
    code = request_code(client, smtp, u["email"], "delete_account", nth=2)
    r = client.post("/api/auth/reset-password", json={"email": u["email"], "code": code,
                                                      "new_password": "another passphrase"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_code"


def test_login_refresh_logout(client, users):
    u = users()
    assert u["token_type"] == "Bearer" and u["expires_in"] > 0
    assert client.get("/api/user/profile", headers=bearer(u["access_token"])).status_code == 200
    # A refresh token is not an access token, nor the reverse.
    assert client.get("/api/user/profile", headers=bearer(u["refresh_token"])).status_code == 401
    assert client.post("/api/auth/refresh", headers=bearer(u["access_token"])).status_code == 401
    r = client.post("/api/auth/refresh", headers=bearer(u["refresh_token"]))
    assert r.status_code == 200
    pair = r.get_json()
    assert pair["refresh_token"] != u["refresh_token"]
    # Rotation: the spent refresh token is refused, and its reuse ends the session (tests/test_sessions.py).
    r = client.post("/api/auth/refresh", headers=bearer(u["refresh_token"]))
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_revoked"
    assert client.get("/api/user/profile", headers=bearer(pair["access_token"])).status_code == 401
    # Logout revokes the access token and its refresh token.
    pair = client.post("/api/auth/login", json={"email": u["email"], "password": u["password"]}).get_json()
    assert client.post("/api/auth/logout", headers=bearer(pair["access_token"])).status_code == 200
    r = client.get("/api/user/profile", headers=bearer(pair["access_token"]))
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_revoked"
    assert client.post("/api/auth/refresh", headers=bearer(pair["refresh_token"])).status_code == 401


def test_login_wrong_password_and_unknown_account(client, users):
    u = users()
    r = client.post("/api/auth/login", json={"email": u["email"], "password": "wrong password!"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_credentials"
    r = client.post("/api/auth/login", json={"email": new_email(), "password": "wrong password!"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_credentials"


def test_login_brute_force_gets_growing_delays_without_locking_the_victim_out(app, users):
    u = users()
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "10.66.66.66"
    delays = []
    for _ in range(8):
        r = attacker.post("/api/auth/login", json={"email": u["email"], "password": "guess guess guess"})
        if r.status_code == 429:
            delays.append(int(r.headers["Retry-After"]))
            from shared.redis_client import get_redis
            # Time passing is simulated by moving the last failure back; the counters stay real.
            r_ = get_redis()
            for key in r_.scan_iter("lt:*"):
                r_.hset(key, "t", float(r_.hget(key, "t")) - 10_000)
        else:
            assert r.status_code == 401
    assert delays and delays == sorted(delays) and delays[-1] > delays[0], delays
    assert r.get_json()["error"]["code"] in {"invalid_credentials", "too_many_attempts"}
    # The victim, from another address, is not locked out: the right password works.
    victim = app.test_client()
    victim.environ_base["REMOTE_ADDR"] = "10.77.77.77"
    r = victim.post("/api/auth/login", json={"email": u["email"], "password": u["password"]})
    assert r.status_code == 200, r.get_json()


def test_reset_password_revokes_every_token(client, smtp, users):
    u = users()
    code = request_code(client, smtp, u["email"], "reset_password", nth=2)
    r = client.post("/api/auth/reset-password", json={"email": u["email"], "code": code,
                                                      "new_password": "a brand new passphrase"})
    assert r.status_code == 200, r.get_json()
    assert client.get("/api/user/profile", headers=bearer(u["access_token"])).status_code == 401
    assert client.post("/api/auth/refresh", headers=bearer(u["refresh_token"])).status_code == 401
    assert client.post("/api/auth/login", json={"email": u["email"], "password": u["password"]}).status_code == 401
    r = client.post("/api/auth/login", json={"email": u["email"], "password": "a brand new passphrase"})
    assert r.status_code == 200


def test_send_code_is_throttled_per_address_and_purpose(app, worker):
    address = new_email()
    statuses = []
    for i in range(4):
        c = app.test_client()
        c.environ_base["REMOTE_ADDR"] = f"10.5.5.{i + 1}"  # different IPs: the per-address limit still holds
        statuses.append(c.post("/api/auth/send-code", json={"email": address, "purpose": "register"}))
    assert [r.status_code for r in statuses] == [202, 202, 202, 429]  # 3/minute in tests/conftest.py
    last = statuses[-1]
    assert last.get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(last.headers["Retry-After"]) <= 61  # a minute, rounded up
    # Another purpose has a limit of its own.
    r = c.post("/api/auth/send-code", json={"email": address, "purpose": "reset_password"})
    assert r.status_code == 202, r.get_json()
