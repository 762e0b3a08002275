"""Open event streams counted per owner in Redis, against MAX_STREAMS_PER_USER.

A sorted set per owner holds its open streams' ids scored by when their entries expire
(Redis's own clock), so a killed process cannot leak slots: its entries lapse by themselves.
"""
from __future__ import annotations

import logging
import math
import time
import uuid

import redis

from api.errors import APIError
from shared.redis_client import get_redis
from shared.settings import get_settings

log = logging.getLogger(__name__)

# A sorted set per owner: its open streams' ids, scored by when their entries expire (Redis time).
_OPEN_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])))
return 1
"""
_TOUCH_SLOT = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1]), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])))
return 1
"""


class StreamSlot:
    """One open event stream, counted in Redis against its owner's MAX_STREAMS_PER_USER.

    The stream renews its entry at every keep-alive and frees it when its response
    closes. The entry of a stream whose process was killed expires TTL_KEEPALIVES periods
    after its last renewal, so a dead process holds no slot for longer than that.
    """

    TTL_KEEPALIVES = 4

    def __init__(self, owner: str) -> None:
        self.key = f"sse:open:{owner}"
        self.id = uuid.uuid4().hex
        self.period = get_settings().SSE_KEEPALIVE_SECONDS
        self.ttl = self.TTL_KEEPALIVES * self.period
        self._renewed = time.monotonic()

    @classmethod
    def open(cls, owner: str) -> StreamSlot:
        """Take a slot for `owner` ("user:<id>", or "ip:<address>" for an anonymous link), or raise 429."""
        limit = get_settings().MAX_STREAMS_PER_USER
        slot = cls(owner)
        if not get_redis().eval(_OPEN_SLOT, 1, slot.key, limit, slot.ttl, slot.id):
            raise APIError(429, "too_many_streams",
                           f"at most {limit} event streams may be open at once; close one and retry",
                           {"limit": limit}, {"Retry-After": str(math.ceil(slot.period))})
        return slot

    def touch(self) -> None:
        """Renew the entry, at most twice per keep-alive period."""
        now = time.monotonic()
        if now - self._renewed >= self.period / 2:
            self._renewed = now
            get_redis().eval(_TOUCH_SLOT, 1, self.key, self.ttl, self.id)

    def close(self) -> None:
        """Free the slot (if Redis is away, the entry expires by itself)."""
        try:
            get_redis().zrem(self.key, self.id)
        except redis.RedisError:
            log.warning("could not free stream slot %s of %s; it expires in %.0f s", self.id, self.key, self.ttl)
