"""One-time email codes: 6 digits from a CSPRNG, kept hashed in Redis, bound to a purpose.

A code lives CODE_TTL seconds and allows CODE_MAX_ATTEMPTS guesses; a new code replaces
the old one; a correct guess consumes it. Every refused guess gets the same answer, whether
the code is wrong, spent, expired, out of guesses or was never sent (no code is stored for
an address that cannot use it), so the answer never tells whether an account exists.

How often codes are sent is limited here, on the normalised address (api.schemas.auth), so
that no spelling of an address escapes its limits: RATELIMIT_SEND_CODE_EMAIL per address and
purpose from anywhere, RATELIMIT_SEND_CODE_EMAIL_IP per address, purpose and client IP.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from limits import parse_many

from api.errors import APIError
from api.extensions.limiter import KEY_PREFIX, exceeded, strategy
from shared.redis_client import get_redis
from shared.settings import get_settings

# Counts the guess; past the allowance the code is gone.
_CHECK = """
local h = redis.call('HGET', KEYS[1], 'h')
if not h then return false end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
if n > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return false
end
return h
"""


def _hash(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def _key(email: str, purpose: str) -> str:
    return f"code:{purpose}:{_hash(email)}"


def _digest(email: str, purpose: str, code: str) -> str:
    msg = f"{purpose}:{email}:{code}".encode()
    return hmac.new(get_settings().SECRET_KEY.encode(), msg, hashlib.sha256).hexdigest()


def wrong_code() -> APIError:
    """The one answer to every refused code."""
    return APIError(400, "invalid_code", "the code is wrong or has expired; request a new one")


def issue(email: str, purpose: str) -> str:
    """A fresh code for this address and purpose, replacing any earlier one."""
    code = f"{secrets.randbelow(1_000_000):06d}"
    r = get_redis()
    key = _key(email, purpose)
    pipe = r.pipeline()
    pipe.delete(key)
    pipe.hset(key, mapping={"h": _digest(email, purpose, code), "n": 0})
    pipe.expire(key, get_settings().CODE_TTL)
    pipe.execute()
    return code


def check(email: str, purpose: str, code: str) -> None:
    """Count a guess and raise the one wrong-code answer unless it is right; the code stays (see `spend`)."""
    stored = get_redis().eval(_CHECK, 1, _key(email, purpose), get_settings().CODE_MAX_ATTEMPTS)
    if not stored or not hmac.compare_digest(stored, _digest(email, purpose, code)):
        raise wrong_code()


def spend(email: str, purpose: str) -> None:
    """Use up a code `check` accepted; only one caller can (a concurrent one gets the wrong-code answer)."""
    if not get_redis().delete(_key(email, purpose)):
        raise wrong_code()


def consume(email: str, purpose: str, code: str) -> None:
    """Accept the code once, or raise the one wrong-code answer."""
    check(email, purpose, code)
    spend(email, purpose)


def send_key(email: str, purpose: str) -> tuple[str, ...]:
    """The identifiers the send-code limits of this address and purpose count under."""
    return KEY_PREFIX, "send-code", purpose, _hash(email)


def throttle_send(email: str, purpose: str, ip: str) -> None:
    """Count a code request for the normalised `email`, or raise RateLimited (429 `rate_limited`).

    The per-address limit counts every request however the address was spelled and from
    wherever it came; the per-address-and-IP limit is only counted when the first allows the
    request, so requests from elsewhere cannot use up the owner's allowance beyond it.
    """
    counter = strategy()
    if counter is None:
        return
    s = get_settings()
    address = send_key(email, purpose)
    per_address = [(item, address) for item in parse_many(s.RATELIMIT_SEND_CODE_EMAIL)]
    per_address_ip = [(item, (*address, ip)) for item in parse_many(s.RATELIMIT_SEND_CODE_EMAIL_IP)]
    for item, key in per_address_ip:
        if not counter.test(item, *key):
            raise exceeded(item, key)
    for item, key in per_address:
        if not counter.hit(item, *key):
            raise exceeded(item, key)
    for item, key in per_address_ip:
        counter.hit(item, *key)
