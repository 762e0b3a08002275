"""Rate limits (Flask-Limiter on Redis): per IP on every auth route.

The per-address limits of send-code are counted by api.services.codes on the same storage
(`limiter.limiter`, under KEY_PREFIX), after the address has been normalised; the per-user
limits of costly routes by `per_user`, after the caller has been authenticated.
"""
from __future__ import annotations

import math
import time

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many

from shared.settings import get_settings

KEY_PREFIX = "rl"

# headers_enabled would stamp Retry-After on every response; ours goes on 429s only.
limiter = Limiter(key_func=get_remote_address, strategy="fixed-window", headers_enabled=False)


def retry_after_seconds() -> int:
    """Seconds until the limit that was just breached resets."""
    current = limiter.current_limit
    return max(1, math.ceil(current.reset_at - time.time())) if current else 60


class RateLimited(Exception):
    """Raised past a limit (counted here, by codes, or Flask-Limiter's on a route): api.errors
    answers every one alike, 429 `rate_limited` with Retry-After."""

    def __init__(self, item: RateLimitItem, retry_after: int):
        super().__init__(f"too many requests: at most {item}; try again in {retry_after} s")
        self.limit = str(item)
        self.retry_after = retry_after


def per_user(limit_value: str, scope: str, user_id: str) -> None:
    """Count one request of a signed-in user against `limit_value` (Flask-Limiter's notation,
    e.g. "30/minute" or "30/minute;500/day") in `scope`; raise RateLimited past any of them."""
    if not limiter.enabled:
        return
    strategy = limiter.limiter
    key = (KEY_PREFIX, scope, "user", user_id)
    for item in parse_many(limit_value):
        if not strategy.hit(item, *key):
            raise exceeded(item, key)


def exceeded(item: RateLimitItem, key: tuple[str, ...]) -> RateLimited:
    """The RateLimited for `item` under `key`, with the seconds until its window resets."""
    reset_at = limiter.limiter.get_window_stats(item, *key).reset_time
    return RateLimited(item, max(1, math.ceil(reset_at - time.time())))


def init_app(app: Flask) -> None:
    """Bind the limiter to the app, on REDIS_URL."""
    s = get_settings()
    app.config.setdefault("RATELIMIT_STORAGE_URI", s.REDIS_URL)
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": s.REDIS_SOCKET_TIMEOUT,
                                                        "socket_timeout": 2})
    app.config.setdefault("RATELIMIT_ENABLED", s.RATELIMIT_ENABLED)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", KEY_PREFIX)
    limiter.init_app(app)
