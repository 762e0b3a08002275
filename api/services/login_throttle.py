"""Growing delays after failed sign-ins, per account+IP, per IP and per account.

No hard lockout: the per-account delay (which anyone could trigger against a victim) is
capped at ACCOUNT_MAX_DELAY seconds, while the per-IP and per-pair delays grow to 15 minutes.
"""
from __future__ import annotations

import hashlib
import math
import time

from api.errors import APIError
from shared.redis_client import get_redis

WINDOW = 3600
# scope -> (free failures, max delay in seconds)
POLICY = {"pair": (3, 900), "ip": (20, 900), "acct": (10, 60)}
ACCOUNT_MAX_DELAY = POLICY["acct"][1]


def _keys(email: str, ip: str) -> dict[str, str]:
    h = hashlib.sha256(email.encode()).hexdigest()[:32]
    return {"pair": f"lt:pair:{h}:{ip}", "ip": f"lt:ip:{ip}", "acct": f"lt:acct:{h}"}


def _delay(scope: str, failures: int) -> float:
    free, cap = POLICY[scope]
    if failures < free:
        return 0.0
    return float(min(2 ** (failures - free), cap))


def check(email: str, ip: str) -> None:
    """Raise 429 with Retry-After while any scope still asks the caller to wait."""
    r = get_redis()
    keys = _keys(email, ip)
    pipe = r.pipeline(transaction=False)
    for key in keys.values():
        pipe.hmget(key, "n", "t")
    now = time.time()
    wait = 0.0
    for scope, (n, t) in zip(keys, pipe.execute()):
        if n is None:
            continue
        wait = max(wait, float(t) + _delay(scope, int(n)) - now)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise APIError(429, "too_many_attempts", f"too many failed sign-ins; try again in {seconds} s",
                       {"retry_after": seconds}, {"Retry-After": str(seconds)})


def failed(email: str, ip: str) -> None:
    r = get_redis()
    now = time.time()
    pipe = r.pipeline(transaction=False)
    for key in _keys(email, ip).values():
        pipe.hincrby(key, "n", 1)
        pipe.hset(key, "t", now)
        pipe.expire(key, WINDOW)
    pipe.execute()


def succeeded(email: str, ip: str) -> None:
    get_redis().delete(_keys(email, ip)["pair"])
