"""Accounts under attack (issue 11): wrong codes, address spellings, throttles, username races,
proxies and headers, against the real app, worker, Redis and SMTP sink."""
from __future__ import annotations

import threading
import uuid

import requests
from limits import parse_many

from tests.support import bearer, code_from, new_email, request_code

WRONG_GUESSES = 7  # past the 5 a code allows


def _client(app, ip: str | None = None):
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = ip or f"10.71.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    return c


def _answer(r) -> tuple:
    """Everything a client sees, request id aside."""
    return r.status_code, tuple(sorted((k, v) for k, v in r.headers.items() if k != "X-Request-ID")), r.get_data()


def _other(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_a_wrong_code_answers_the_same_for_known_and_unknown_addresses(app, smtp, users):
    """register and reset_password: an address with an account and one without; delete_account:
    a user with a code pending and one without. Every guess, byte for byte."""
    known, other = users(), users()
    unknown = new_email()
    c = _client(app)
    mailed = [request_code(c, smtp, unknown, "register"),
              request_code(c, smtp, known["email"], "reset_password", nth=2),
              request_code(c, smtp, known["email"], "delete_account", nth=3)]
    for address, purpose in ((unknown, "reset_password"), (known["email"], "register")):  # no code is stored
        assert c.post("/api/auth/send-code", json={"email": address, "purpose": purpose}).status_code == 202
    wrong = next(f"{n:06d}" for n in range(1, 100) if f"{n:06d}" not in mailed)
    for n in range(WRONG_GUESSES):
        for path, body in (("/api/auth/register", {"password": "a fine passphrase", "code": wrong}),
                           ("/api/auth/reset-password", {"code": wrong, "new_password": "a fine passphrase"})):
            seen = {_answer(c.post(path, json={**body, "email": a})) for a in (known["email"], unknown)}
            assert len(seen) == 1, (path, n, seen)
            assert next(iter(seen))[0] == 400
        seen = {_answer(c.delete("/api/user/account", headers=bearer(u["access_token"]), json={"code": wrong}))
                for u in (known, other)}
        assert len(seen) == 1, ("delete_account", n, seen)
    body = c.post("/api/auth/register", json={"email": unknown, "password": "a fine passphrase",
                                               "code": wrong}).get_json()
    assert body["error"] == {"code": "invalid_code", "details": None,
                             "message": "the code is wrong or has expired; request a new one"}


def test_send_code_limits_hold_however_the_address_is_spelled(app, smtp, worker):
    """Case, full-width letters in the local part or the domain: one address, one limit, one inbox,
    one account."""
    from shared.settings import get_settings
    per_minute = parse_many(get_settings().RATELIMIT_SEND_CODE_EMAIL)[0].amount
    address = new_email()
    local, domain = address.split("@")
    full_width = "".join(chr(ord(ch) + 0xFEE0) if ch.isalpha() else ch for ch in local)
    spellings = [address, f" {address.upper()} ", f"{full_width}@{domain}", local + "@ex\uff41mple.com"]
    assert per_minute < len(spellings)
    answers = []
    for n, spelling in enumerate(spellings):  # from a new IP each time: only the address is in common
        answers.append(_client(app, f"10.72.{n}.{uuid.uuid4().int % 250}").post(
            "/api/auth/send-code", json={"email": spelling, "purpose": "register"}))
    expected = [202] * per_minute + [429] * (len(spellings) - per_minute)
    assert [r.status_code for r in answers] == expected, [r.get_json() for r in answers]
    refused = answers[-1]
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 61  # a minute, rounded up
    mails = smtp.wait_for(address, count=per_minute)  # all to the one inbox
    # The newest code (mails may arrive out of order) signs up the one account, whatever spelling
    # is used; a sign-in with another spelling finds it.
    newest = answers[per_minute - 1].get_json()["job_id"]
    code = code_from(next(m for m in mails if f"<job-{newest}@" in m["Message-ID"]))
    c = _client(app)
    r = c.post("/api/auth/register", json={"email": spellings[-1], "password": "a fine passphrase", "code": code})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["email"] == address
    r = c.post("/api/auth/login", json={"email": spellings[2], "password": "a fine passphrase"})
    assert r.status_code == 200, r.get_json()


def test_others_cannot_lock_the_owner_out_of_codes_beyond_the_minute(app, worker):
    """One IP asking for a victim's codes uses up its own hourly allowance, not the owner's."""
    from api.extensions.limiter import strategy
    from api.services import codes
    from shared.settings import get_settings
    s = get_settings()
    minute = parse_many(s.RATELIMIT_SEND_CODE_EMAIL)
    hourly = parse_many(s.RATELIMIT_SEND_CODE_EMAIL_IP)[0].amount
    victim = new_email()

    def minute_passes():  # the per-address window ends; the hourly counters stay real
        for item in minute:
            with app.app_context():
                strategy().clear(item, *codes.send_key(victim, "reset_password"))

    attacker, owner = _client(app), _client(app)
    statuses = []
    while len([s for s in statuses if s == 202]) < hourly and len(statuses) < 3 * hourly:
        r = attacker.post("/api/auth/send-code", json={"email": victim, "purpose": "reset_password"})
        statuses.append(r.status_code)
        if r.status_code == 429:
            minute_passes()
    assert statuses.count(202) == hourly, statuses
    minute_passes()
    r = attacker.post("/api/auth/send-code", json={"email": victim, "purpose": "reset_password"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 60, (r.status_code, r.headers)
    r = owner.post("/api/auth/send-code", json={"email": victim, "purpose": "reset_password"})
    assert r.status_code == 202, r.get_json()


def test_the_current_password_check_gets_growing_delays_per_user_and_ip(app, users):
    from api.services.login_throttle import ACCOUNT_MAX_DELAY, password_check
    from shared.redis_client import get_redis
    victim, bystander = users(), users()
    ip = f"10.73.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    thief = _client(app, ip)

    def age(user_id: str, address: str) -> None:  # time passes; the counters stay real
        r = get_redis()
        for key in password_check.keys(user_id, address).values():
            if r.hget(key, "t"):
                r.hset(key, "t", float(r.hget(key, "t")) - 10_000)

    def guess(n: int):
        return thief.post("/api/user/password", headers=bearer(victim["access_token"]),
                          json={"current_password": f"guess number {n}", "new_password": "a fresh passphrase"})
    delays = []
    for n in range(21):  # past the per-IP allowance of 20
        r = guess(n)
        if r.status_code == 429:
            assert r.get_json()["error"]["code"] == "too_many_attempts"
            delays.append(int(r.headers["Retry-After"]))
            age(victim["id"], ip)
            r = guess(n)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_credentials", r.get_json()
    assert len(delays) >= 3 and delays == sorted(delays) and delays[-1] > delays[0], delays
    # Per IP: another user's token from the same address waits too, with the right password.
    right = {"current_password": bystander["password"], "new_password": "a fresh passphrase"}
    r = thief.post("/api/user/password", headers=bearer(bystander["access_token"]), json=right)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.get_json()
    # The owner, elsewhere, waits at most the per-user cap and is never locked out.
    owner_ip = f"10.74.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    owner = _client(app, owner_ip)
    right = {"current_password": victim["password"], "new_password": "a fresh passphrase"}
    r = owner.post("/api/user/password", headers=bearer(victim["access_token"]), json=right)
    if r.status_code == 429:
        assert int(r.headers["Retry-After"]) <= ACCOUNT_MAX_DELAY
        age(victim["id"], owner_ip)
        r = owner.post("/api/user/password", headers=bearer(victim["access_token"]), json=right)
    assert r.status_code == 200, r.get_json()


def test_register_checks_the_code_before_saying_anything_about_other_accounts(app, smtp, users):
    taken = "taken_" + uuid.uuid4().hex[:8]
    holder = users(username=taken)
    c = _client(app)
    address = new_email()
    code = request_code(c, smtp, address, "register")
    for body in ({"email": address, "username": taken.upper()}, {"email": holder["email"]}):
        r = c.post("/api/auth/register", json={**body, "password": "a fine passphrase", "code": _other(code)})
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_code", (body, r.get_json())
    r = c.post("/api/auth/register", json={"email": address, "username": taken.upper(),
                                           "password": "a fine passphrase", "code": code})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "username_taken", r.get_json()
    # The code is still good for another name (no new mail, no minute's wait), and then spent.
    fresh = {"email": address, "username": "free_" + uuid.uuid4().hex[:8], "password": "a fine passphrase",
             "code": code}
    assert c.post("/api/auth/register", json=fresh).status_code == 201
    r = c.post("/api/auth/register", json=fresh)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_code", r.get_json()


def _race(calls) -> list:
    """Run the calls at once (a barrier lets them go together); their responses, in order."""
    barrier = threading.Barrier(len(calls))
    out = [None] * len(calls)

    def run(i):
        barrier.wait()
        out[i] = calls[i]()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_concurrent_usernames_that_differ_only_in_case_never_both_succeed(app, smtp, users):
    a, b = users(), users()
    ca, cb = _client(app), _client(app)
    for n in range(12):
        name = f"dup_{uuid.uuid4().hex[:8]}"
        other = name if n % 2 else name.upper()  # same case, then different case
        rs = _race([lambda c=c, u=u, wanted=wanted: c.put("/api/user/profile", headers=bearer(u["access_token"]),
                                                          json={"username": wanted})
                    for c, u, wanted in ((ca, a, name), (cb, b, other))])
        statuses = sorted(r.status_code for r in rs)
        assert statuses == [200, 409], (n, [r.get_json() for r in rs])
        assert next(r for r in rs if r.status_code == 409).get_json()["error"]["code"] == "username_taken"
    # Sign-ups racing for one username (in two cases): one account gets it, the other a 409.
    addresses = [new_email(), new_email()]
    codes_ = [request_code(c, smtp, address, "register") for c, address in zip((ca, cb), addresses, strict=True)]
    name = f"dup_{uuid.uuid4().hex[:8]}"
    rs = _race([lambda i=i, c=c: c.post("/api/auth/register", json={
        "email": addresses[i], "code": codes_[i], "password": "a fine passphrase",
        "username": name if i == 0 else name.upper()}) for i, c in enumerate((ca, cb))])
    assert sorted(r.status_code for r in rs) == [201, 409], [r.get_json() for r in rs]


def test_trusted_proxies_decides_whose_address_the_throttles_see(app, make_stack):
    """0 (the session's app): X-Forwarded-For is ignored. 1 (a gunicorn stack): the address
    the one proxy appended is the client's; what the client put before it is not."""
    email = new_email()
    direct = _client(app)
    for n in range(4):
        r = direct.post("/api/auth/login", headers={"X-Forwarded-For": f"198.51.100.{n}"},
                        json={"email": email, "password": "wrong wrong wrong"})
    assert r.status_code == 429, "a client must not pick its own address when no proxy is trusted"
    stack = make_stack("proxies", TRUSTED_PROXIES="1")
    stack.start_web()
    email = new_email()

    def login(forwarded: str):
        return requests.post(f"{stack.url}/api/auth/login", headers={"X-Forwarded-For": forwarded},
                             json={"email": email, "password": "wrong wrong wrong"}, timeout=10)
    statuses = [login(f"{n}.1.1.1, 203.0.113.7").status_code for n in range(4)]
    assert statuses == [401, 401, 401, 429], statuses
    r = login("203.0.113.8")
    assert r.status_code == 401, "another client behind the same proxy is not throttled by the first"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_every_response_says_nosniff(client, users, worker):
    u = users()
    sent = client.post("/api/auth/send-code", json={"email": new_email(), "purpose": "register"}).get_json()
    responses = [
        client.get("/api/health"), client.get("/api/nope"), client.get("/api/auth/login"),
        client.post("/api/auth/login", json={}), client.get("/api/user/profile"),
        client.get("/api/user/profile", headers=bearer(u["access_token"])),
        client.get("/api/openapi.json"), client.get("/api/docs"), client.get("/api/swagger"),
        client.post("/api/auth/login", data="{bad", content_type="application/json"),
        client.get(sent["status_url"]), client.get(sent["events_url"]),
    ]
    for r in responses:
        assert r.headers.get("X-Content-Type-Options") == "nosniff", (r.request.path, r.status_code)
        r.close()


def test_a_routes_own_limit_answers_like_every_other_rate_limit(app):
    """The per-IP limit on the auth routes: the same 429 as the limits counted in code."""
    from shared.settings import get_settings
    per_minute = parse_many(get_settings().RATELIMIT_AUTH)[0]
    c = _client(app)
    for _ in range(per_minute.amount):
        assert c.post("/api/auth/login", json={}).status_code == 400
    r = c.post("/api/auth/login", json={})
    assert r.status_code == 429
    assert r.get_json()["error"]["code"] == "rate_limited"
    assert r.get_json()["error"]["details"] == {"limit": str(per_minute), "retry_after": int(r.headers["Retry-After"])}
    assert 0 < int(r.headers["Retry-After"]) <= 61  # a minute, rounded up
