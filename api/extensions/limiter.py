"""Rate limits (Flask-Limiter on Redis): per IP on every auth route, per email on codes."""
from __future__ import annotations

import math
import time

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from shared.settings import get_settings

# headers_enabled would stamp Retry-After on every response; ours goes on 429s only.
limiter = Limiter(key_func=get_remote_address, strategy="fixed-window", headers_enabled=False)


def retry_after_seconds() -> int:
    """Seconds until the limit that was just breached resets."""
    current = limiter.current_limit
    return max(1, math.ceil(current.reset_at - time.time())) if current else 60


def email_key() -> str:
    """The address and purpose in the body: resends are throttled per email and purpose."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    if not email:
        return f"ip:{get_remote_address()}"
    return f"email:{str(email).strip().lower()}:{body.get('purpose')}"


def init_app(app: Flask) -> None:
    s = get_settings()
    app.config.setdefault("RATELIMIT_STORAGE_URI", s.REDIS_URL)
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": s.REDIS_SOCKET_TIMEOUT,
                                                        "socket_timeout": 2})
    app.config.setdefault("RATELIMIT_ENABLED", s.RATELIMIT_ENABLED)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "rl")
    limiter.init_app(app)
