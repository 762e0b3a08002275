"""Profile, password change, account erasure, admin user management, and token revocation."""
from __future__ import annotations

import uuid

import pytest

from tests.support import bearer, new_email, request_code


def test_profile_read_and_edit(client, users):
    u = users()
    h = bearer(u["access_token"])
    r = client.get("/api/user/profile", headers=h)
    assert r.status_code == 200 and r.get_json()["email"] == u["email"]
    name = "amy_" + uuid.uuid4().hex[:8]
    r = client.put("/api/user/profile", headers=h, json={"username": name, "full_name": "Amy Pond",
                                                          "bio": "Learns fast.", "phone": "+44 20 7946 0000"})
    assert r.status_code == 200, r.get_json()
    got = client.get("/api/user/profile", headers=h).get_json()
    assert (got["username"], got["full_name"], got["bio"], got["phone"]) == (name, "Amy Pond", "Learns fast.",
                                                                          "+44 20 7946 0000")
    # Only the fields sent change.
    r = client.put("/api/user/profile", headers=h, json={"bio": "Changed."})
    assert r.get_json()["full_name"] == "Amy Pond" and r.get_json()["bio"] == "Changed."


def test_profile_refuses_fields_outside_the_list_by_name(client, users):
    u = users()
    r = client.put("/api/user/profile", headers=bearer(u["access_token"]),
                   json={"full_name": "X", "role": "admin", "email": "x@example.com", "id": "1"})
    assert r.status_code == 400
    err = r.get_json()["error"]
    assert err["code"] == "validation_error"
    for field in ("role", "email", "id"):
        assert field in err["message"]
    assert client.get("/api/user/profile", headers=bearer(u["access_token"])).get_json()["role"] == "student"


def test_profile_username_must_be_unique_and_valid(client, users):
    a, b = users(), users()
    name = "taken_" + uuid.uuid4().hex[:8]
    r = client.put("/api/user/profile", headers=bearer(a["access_token"]), json={"username": name})
    assert r.status_code == 200
    r = client.put("/api/user/profile", headers=bearer(b["access_token"]), json={"username": name.upper()})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "username_taken"
    r = client.put("/api/user/profile", headers=bearer(b["access_token"]), json={"username": "../etc"})
    assert r.status_code == 400


def test_change_password(client, users):
    u = users()
    r = client.post("/api/user/password", headers=bearer(u["access_token"]),
                    json={"current_password": "wrong wrong wrong", "new_password": "another long one"})
    assert r.status_code == 400
    r = client.post("/api/user/password", headers=bearer(u["access_token"]),
                    json={"current_password": u["password"], "new_password": "another long one"})
    assert r.status_code == 200
    fresh = r.get_json()
    assert client.get("/api/user/profile", headers=bearer(u["access_token"])).status_code == 401
    assert client.get("/api/user/profile", headers=bearer(fresh["access_token"])).status_code == 200
    assert client.post("/api/auth/login", json={"email": u["email"], "password": "another long one"}).status_code == 200


def test_delete_account_erases_the_user_and_everything_they_own(app, client, smtp, users):
    import io
    u = users()
    h = bearer(u["access_token"])
    sent = client.post("/api/chat/send", headers=h, json={"message": "remember me"}).get_json()
    up = client.post("/api/upload/file", headers=h, data={"file": (io.BytesIO(b"My private notes on owls."), "o.txt")},
                     content_type="multipart/form-data").get_json()
    from tests.support import wait_for_state
    wait_for_state(client, sent["job_id"], u["access_token"])
    wait_for_state(client, up["job_id"], u["access_token"])
    code = request_code(client, smtp, u["email"], "delete_account", nth=2)
    r = client.delete("/api/user/account", headers=bearer(u["access_token"]), json={"code": "000000"})
    assert r.status_code == 400
    r = client.delete("/api/user/account", headers=bearer(u["access_token"]), json={"code": code})
    assert r.status_code == 200, r.get_json()
    assert client.get("/api/user/profile", headers=bearer(u["access_token"])).status_code == 401
    assert client.post("/api/auth/login", json={"email": u["email"], "password": u["password"]}).status_code == 401
    from shared.database import db
    from shared.models import Chunk, Conversation, File, Job, Message, User
    from shared.storage import get_storage
    with app.app_context():
        assert db.session.get(User, u["id"]) is None
        assert db.session.query(Job).filter_by(user_id=u["id"]).count() == 0
        assert db.session.query(Conversation).filter_by(user_id=u["id"]).count() == 0
        assert db.session.query(Message).filter_by(conversation_id=sent["conversation_id"]).count() == 0
        assert db.session.query(File).filter_by(user_id=u["id"]).count() == 0
        assert db.session.query(Chunk).filter_by(user_id=u["id"]).count() == 0
    assert not get_storage().exists(f"files/{u['id']}/{up['file']['sha256']}")


def make_admin(app, users) -> dict:
    u = users()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", "--email", u["email"]], env={"ADMIN_PASSWORD": u["password"]})
    assert result.exit_code == 0, result.output
    return u


def test_create_admin_command_and_admin_routes(app, client, users):
    admin = make_admin(app, users)
    student = users()
    h = bearer(admin["access_token"])
    assert client.get("/api/admin/users", headers=bearer(student["access_token"])).status_code == 403
    r = client.get("/api/admin/users", headers=h, query_string={"q": student["email"]})
    assert r.status_code == 200
    page = r.get_json()
    assert page["total"] == 1 and page["items"][0]["id"] == student["id"]
    r = client.get("/api/admin/users", headers=h, query_string={"limit": 1000})
    assert r.status_code == 400
    r = client.patch(f"/api/admin/users/{student['id']}", headers=h, json={"role": "tutor"})
    assert r.status_code == 200 and r.get_json()["role"] == "tutor"
    r = client.patch(f"/api/admin/users/{student['id']}", headers=h, json={"role": "superuser"})
    assert r.status_code == 400
    r = client.patch(f"/api/admin/users/{uuid.uuid4().hex}", headers=h, json={"role": "tutor"})
    assert r.status_code == 404
    r = client.patch(f"/api/admin/users/{admin['id']}", headers=h, json={"status": "disabled"})
    assert r.status_code == 400, "an admin cannot lock themselves out"


def test_a_disabled_user_is_refused_at_once(app, client, users):
    admin = make_admin(app, users)
    student = users()
    assert client.get("/api/user/profile", headers=bearer(student["access_token"])).status_code == 200
    r = client.patch(f"/api/admin/users/{student['id']}", headers=bearer(admin["access_token"]),
                     json={"status": "disabled"})
    assert r.status_code == 200
    assert client.get("/api/user/profile", headers=bearer(student["access_token"])).status_code == 401
    assert client.post("/api/auth/refresh", headers=bearer(student["refresh_token"])).status_code == 401
    r = client.post("/api/auth/login", json={"email": student["email"], "password": student["password"]})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "account_disabled"


PROTECTED = [
    ("GET", "/api/user/profile", None),
    ("PUT", "/api/user/profile", {"bio": "x"}),
    ("POST", "/api/user/password", {"current_password": "x", "new_password": "y"}),
    ("DELETE", "/api/user/account", {"code": "123456"}),
    ("POST", "/api/auth/logout", None),
    ("GET", "/api/jobs", None),
    ("GET", "/api/jobs/{job}", None),
    ("GET", "/api/jobs/{job}/events", None),
    ("DELETE", "/api/jobs/{job}", None),
    ("GET", "/api/admin/users", None),
    ("PATCH", "/api/admin/users/{user}", {"role": "tutor"}),
]


@pytest.fixture(scope="module")
def revoked(app, smtp, worker):
    """A signed-in user whose access token was revoked by logout."""
    from tests.support import sign_up
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    u = sign_up(c, smtp)
    assert c.post("/api/auth/logout", headers=bearer(u["access_token"])).status_code == 200
    return u


@pytest.mark.parametrize("method,path,body", PROTECTED)
def test_every_protected_route_refuses_missing_bad_and_revoked_tokens(client, revoked, method, path, body):
    path = path.format(job=uuid.uuid4().hex, user=revoked["id"])
    for headers, code in [({}, "missing_token"), (bearer("not.a.jwt"), "invalid_token"),
                          (bearer(revoked["access_token"]), "token_revoked")]:
        r = client.open(path, method=method, headers=headers, json=body)
        assert r.status_code == 401, (method, path, headers, r.get_json())
        assert r.get_json()["error"]["code"] == code
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_emails_are_normalised(client, smtp, worker):
    address = new_email()
    code = request_code(client, smtp, address, "register")
    r = client.post("/api/auth/register", json={"email": "  " + address.upper(), "password": "a fine passphrase",
                                                "code": code})
    assert r.status_code == 201 and r.get_json()["email"] == address
    r = client.post("/api/auth/login", json={"email": address.title(), "password": "a fine passphrase"})
    assert r.status_code == 200
