"""One-time email codes: 6 digits from a CSPRNG, kept hashed in Redis, bound to a purpose.

A code lives CODE_TTL seconds and allows CODE_MAX_ATTEMPTS guesses; a new code replaces
the old one; a correct guess consumes it.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from api.errors import APIError
from shared.redis_client import get_redis
from shared.settings import get_settings

_CHECK = """
local h = redis.call('HGET', KEYS[1], 'h')
if not h then return {false, 0} end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
return {h, n}
"""


def _key(email: str, purpose: str) -> str:
    return f"code:{purpose}:{hashlib.sha256(email.encode()).hexdigest()}"


def _digest(email: str, purpose: str, code: str) -> str:
    msg = f"{purpose}:{email}:{code}".encode()
    return hmac.new(get_settings().SECRET_KEY.encode(), msg, hashlib.sha256).hexdigest()


def issue(email: str, purpose: str) -> str:
    code = f"{secrets.randbelow(1_000_000):06d}"
    r = get_redis()
    key = _key(email, purpose)
    pipe = r.pipeline()
    pipe.delete(key)
    pipe.hset(key, mapping={"h": _digest(email, purpose, code), "n": 0})
    pipe.expire(key, get_settings().CODE_TTL)
    pipe.execute()
    return code


def consume(email: str, purpose: str, code: str) -> None:
    """Accept the code once, or raise a 400 that says why."""
    r = get_redis()
    key = _key(email, purpose)
    stored, attempts = r.eval(_CHECK, 1, key)
    if not stored:
        raise APIError(400, "invalid_code", "the code is wrong or has expired; request a new one")
    if hmac.compare_digest(stored, _digest(email, purpose, code)) and attempts <= get_settings().CODE_MAX_ATTEMPTS:
        r.delete(key)
        return
    if attempts >= get_settings().CODE_MAX_ATTEMPTS:
        r.delete(key)
        raise APIError(400, "invalid_code", "too many wrong guesses; request a new code")
    raise APIError(400, "invalid_code", "the code is wrong or has expired; request a new one",
                   {"attempts_left": get_settings().CODE_MAX_ATTEMPTS - attempts})
