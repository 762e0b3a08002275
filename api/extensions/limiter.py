"""Rate limits, counted in Redis with the `limits` library (fixed windows): one way for every limit.

- `per_ip`: per client address (an IPv6 address counts by its /64, which one host holds whole),
  on every auth route (`auth_route_limit`, the blueprint's before-request) and on send-code;
- `per_user`: per signed-in user on the routes that cost us work, after authentication;
- api.services.codes counts send-code per normalised address with `hit`/`allowed`.
Past a limit each raises RateLimited, which api.errors answers as 429 `rate_limited` with
Retry-After. Only the routes that have a limit pay for one: no hook runs on the others (the
Flask-Limiter middleware that did cost ~0.3 ms on every request, bench/README.md).
"""
from __future__ import annotations

import ipaddress
import math
import time

from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from shared.settings import get_settings

KEY_PREFIX = "rl"
EXTENSION = "rate_limits"


class RateLimited(Exception):
    """Raised past a limit: api.errors answers every one alike, 429 `rate_limited` with Retry-After."""

    def __init__(self, item: RateLimitItem, retry_after: int):
        super().__init__(f"too many requests: at most {item}; try again in {retry_after} s")
        self.limit = str(item)
        self.retry_after = retry_after


def strategy() -> FixedWindowRateLimiter | None:
    """This app's counter (None when RATELIMIT_ENABLED is off)."""
    return current_app.extensions[EXTENSION]


def exceeded(item: RateLimitItem, key: tuple[str, ...]) -> RateLimited:
    """The RateLimited for `item` under `key`, with the seconds until its window resets."""
    reset_at = strategy().get_window_stats(item, *key).reset_time
    return RateLimited(item, max(1, math.ceil(reset_at - time.time())))


def hit(limit_value: str, *key: str) -> None:
    """Count one request under `key` against each limit of `limit_value` (e.g. "30/minute;500/day");
    raise RateLimited past any of them."""
    counter = strategy()
    if counter is None:
        return
    for item in parse_many(limit_value):
        if not counter.hit(item, KEY_PREFIX, *key):
            raise exceeded(item, (KEY_PREFIX, *key))


def per_user(limit_value: str, scope: str, user_id: str) -> None:
    """Count one request of a signed-in user in `scope`."""
    hit(limit_value, scope, "user", user_id)


def client_address() -> str:
    """The caller's address as limits count it: IPv4 whole, IPv6 by its /64 (ProxyFix has set remote_addr)."""
    raw = request.remote_addr or "-"
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def per_ip(limit_value: str, scope: str) -> None:
    """Count one request of this client address in `scope`."""
    hit(limit_value, scope, "ip", client_address())


def auth_route_limit() -> None:
    """Before every auth route: RATELIMIT_AUTH per address, counted per route."""
    per_ip(get_settings().RATELIMIT_AUTH, f"auth:{request.endpoint}")


def init_app(app: Flask) -> None:
    """Bind the counters to REDIS_URL (or to `RATELIMIT_STORAGE_URI`), unless RATELIMIT_ENABLED is off."""
    s = get_settings()
    enabled = app.config.get("RATELIMIT_ENABLED", s.RATELIMIT_ENABLED)
    uri = app.config.get("RATELIMIT_STORAGE_URI", s.REDIS_URL)
    storage = storage_from_string(uri, socket_connect_timeout=s.REDIS_SOCKET_TIMEOUT, socket_timeout=2) \
        if enabled else None
    app.extensions[EXTENSION] = FixedWindowRateLimiter(storage) if storage is not None else None
