"""Rate limits (Flask-Limiter on Redis): per IP on every auth route, per email on codes."""
from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from shared.settings import get_settings

limiter = Limiter(key_func=get_remote_address, strategy="fixed-window", headers_enabled=True)


def email_key() -> str:
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return f"email:{str(email).strip().lower()}" if email else f"ip:{get_remote_address()}"


def init_app(app: Flask) -> None:
    s = get_settings()
    app.config.setdefault("RATELIMIT_STORAGE_URI", s.REDIS_URL)
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": s.REDIS_SOCKET_TIMEOUT,
                                                        "socket_timeout": 2})
    app.config.setdefault("RATELIMIT_ENABLED", s.RATELIMIT_ENABLED)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "rl")
    limiter.init_app(app)
