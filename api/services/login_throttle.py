"""Growing delays after failed password checks, per subject+IP, per IP and per subject.

One `Throttle` per place a password is checked: `sign_in` (the subject is the email) and
`password_check` (the current password of POST /api/user/password; the subject is the user
id). No hard lockout: the per-subject delay (which anyone could trigger against a victim)
is capped at ACCOUNT_MAX_DELAY seconds, while the per-IP and per-pair delays grow to 15
minutes.
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


def _delay(scope: str, failures: int) -> float:
    free, cap = POLICY[scope]
    if failures < free:
        return 0.0
    return float(min(2 ** (failures - free), cap))


class Throttle:
    """Failure counters in Redis under `prefix`, one per scope of POLICY."""

    def __init__(self, prefix: str, what: str):
        self.prefix = prefix
        self.what = what  # for the 429's message: "failed sign-ins"

    def keys(self, subject: str, ip: str) -> dict[str, str]:
        """The Redis key of each scope for this subject and client IP."""
        h = hashlib.sha256(subject.encode()).hexdigest()[:32]
        p = self.prefix
        return {"pair": f"{p}:pair:{h}:{ip}", "ip": f"{p}:ip:{ip}", "acct": f"{p}:acct:{h}"}

    def check(self, subject: str, ip: str) -> None:
        """Raise 429 with Retry-After while any scope still asks the caller to wait."""
        r = get_redis()
        keys = self.keys(subject, ip)
        pipe = r.pipeline(transaction=False)
        for key in keys.values():
            pipe.hmget(key, "n", "t")
        now = time.time()
        wait = 0.0
        for scope, (n, t) in zip(keys, pipe.execute(), strict=True):
            if n is None:
                continue
            wait = max(wait, float(t) + _delay(scope, int(n)) - now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise APIError(429, "too_many_attempts", f"too many {self.what}; try again in {seconds} s",
                           {"retry_after": seconds}, {"Retry-After": str(seconds)})

    def failed(self, subject: str, ip: str) -> None:
        """Count a failure in every scope."""
        r = get_redis()
        now = time.time()
        pipe = r.pipeline(transaction=False)
        for key in self.keys(subject, ip).values():
            pipe.hincrby(key, "n", 1)
            pipe.hset(key, "t", now)
            pipe.expire(key, WINDOW)
        pipe.execute()

    def succeeded(self, subject: str, ip: str) -> None:
        """A right password clears this subject's failures from this IP."""
        get_redis().delete(self.keys(subject, ip)["pair"])


sign_in = Throttle("lt", "failed sign-ins")
password_check = Throttle("pt", "wrong current passwords")
