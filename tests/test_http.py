"""What every route shares: the error shape, request ids, CORS, OpenAPI, health, Redis outages."""
from __future__ import annotations

import re
import time

import redis

from tests.support import bearer, free_port


def assert_error_shape(r, status, code=None):
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    body = r.get_json()
    assert set(body) == {"error"} and {"code", "message", "details"} == set(body["error"])
    if code:
        assert body["error"]["code"] == code, body


def test_errors_have_one_shape(client):
    assert_error_shape(client.get("/api/nope"), 404, "not_found")
    assert_error_shape(client.get("/api/auth/login"), 405, "method_not_allowed")
    assert_error_shape(client.post("/api/auth/login", data="{not json", content_type="application/json"),
                       400, "malformed_json")
    assert_error_shape(client.post("/api/auth/login", data="email=a", content_type="text/plain"),
                       415, "unsupported_media_type")
    assert_error_shape(client.post("/api/auth/login", json=["a", "list"]), 400, "validation_error")
    assert_error_shape(client.post("/api/auth/login", json={}), 400, "validation_error")
    huge = "x" * (2 * 1024 * 1024)
    assert_error_shape(client.post("/api/auth/login", data=huge, content_type="application/json"), 413)


def test_request_id_is_echoed_or_made(client):
    r = client.get("/api/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    r = client.get("/api/health", headers={"X-Request-ID": "bad id with spaces <script>"})
    assert r.headers["X-Request-ID"] != "bad id with spaces <script>" and len(r.headers["X-Request-ID"]) == 32
    assert len(client.get("/api/nope").headers["X-Request-ID"]) == 32


def test_request_id_is_kept_on_the_job(client, smtp, worker):
    r = client.post("/api/auth/send-code", json={"email": "rid@example.com", "purpose": "register"},
                    headers={"X-Request-ID": "req-for-job-1"})
    assert r.status_code == 202
    assert client.get(r.get_json()["status_url"]).get_json()["request_id"] == "req-for-job-1"


def test_cors_allows_configured_origins_only(client):
    ok = client.options("/api/auth/login", headers={"Origin": "http://frontend.test",
                                                    "Access-Control-Request-Method": "POST"})
    assert ok.headers.get("Access-Control-Allow-Origin") == "http://frontend.test"
    bad = client.options("/api/auth/login", headers={"Origin": "http://evil.test",
                                                     "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in bad.headers
    # A request without an Origin (not a browser's cross-origin call) gets no CORS headers at all.
    assert "Access-Control-Allow-Origin" not in client.get("/api/health").headers


def test_openapi_documents_every_route(app, client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint.startswith("openapi") or "swagger" in rule.rule \
                or rule.rule in {"/api/", "/api/openapi.json", "/api/docs", "/api/oauth2-redirect.html"} \
                or "static" in rule.rule:
            continue
        path = re.sub(r"<(?:[^<:>]+:)?([^<>]+)>", r"{\1}", rule.rule)  # <id:job_id> -> {job_id}
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)
    login = spec["paths"]["/api/auth/login"]["post"]
    assert "LoginBody" in str(login["requestBody"])
    assert client.get("/api/docs").status_code == 302
    assert client.get("/api/swagger").status_code == 200


def test_health_and_readiness(client, worker):
    assert client.get("/api/health").get_json() == {"status": "ok"}
    r = client.get("/api/health/ready")
    assert r.status_code == 200, r.get_json()
    checks = r.get_json()["checks"]
    assert checks["database"] == "ok" and checks["redis"] == "ok"
    assert all(checks[f"queue:{q}"] == "ok" for q in ("default", "mail", "files", "llm", "tts"))


def test_revocation_check_without_redis_is_503_within_a_second(app, smtp, worker, monkeypatch):
    from tests.support import sign_up
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = "10.3.3.3"
    u = sign_up(c, smtp)
    from shared import redis_client
    dead = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setattr(redis_client, "_clients", {
        k: redis.Redis.from_url(dead, socket_connect_timeout=0.5, socket_timeout=0.5, decode_responses=True)
        for k in (False, True)})
    for method, path in [("GET", "/api/user/profile"), ("GET", "/api/jobs"), ("POST", "/api/auth/logout")]:
        started = time.monotonic()
        r = c.open(path, method=method, headers=bearer(u["access_token"]))
        assert time.monotonic() - started < 1.0
        assert_error_shape(r, 503, "service_unavailable")
        assert r.headers["Retry-After"]
    r = c.get("/api/health/ready")
    assert r.status_code == 503 and "redis" in r.get_json()["error"]["message"]
