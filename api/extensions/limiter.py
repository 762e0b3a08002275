"""Rate limits (Flask-Limiter on Redis): per IP on every auth route.

The per-address limits of send-code are counted by api.services.codes on the same storage
(`limiter.limiter`, under KEY_PREFIX), after the address has been normalised.
"""
from __future__ import annotations

import math
import time

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from shared.settings import get_settings

KEY_PREFIX = "rl"

# headers_enabled would stamp Retry-After on every response; ours goes on 429s only.
limiter = Limiter(key_func=get_remote_address, strategy="fixed-window", headers_enabled=False)


def retry_after_seconds() -> int:
    """Seconds until the limit that was just breached resets."""
    current = limiter.current_limit
    return max(1, math.ceil(current.reset_at - time.time())) if current else 60


def init_app(app: Flask) -> None:
    """Bind the limiter to the app, on REDIS_URL."""
    s = get_settings()
    app.config.setdefault("RATELIMIT_STORAGE_URI", s.REDIS_URL)
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": s.REDIS_SOCKET_TIMEOUT,
                                                        "socket_timeout": 2})
    app.config.setdefault("RATELIMIT_ENABLED", s.RATELIMIT_ENABLED)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", KEY_PREFIX)
    limiter.init_app(app)
