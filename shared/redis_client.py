"""Redis clients, one of each per process, with short timeouts so that an outage fails fast.

`get_redis()` is for ordinary commands (socket timeout REDIS_SOCKET_TIMEOUT);
`get_blocking_redis()` is for XREAD BLOCK, whose reads wait up to the SSE keep-alive.
"""
from __future__ import annotations

import threading

import redis

from shared.settings import get_settings

_clients: dict[bool, redis.Redis] = {}
_lock = threading.Lock()


# redis-py caps a pool at 100 connections unless told otherwise, and raises MaxConnectionsError
# beyond: a gevent process (the API's workers with their open event streams, the llm worker's
# pool of 200) can have more commands in flight at once. Each greenlet holds a connection only
# while its command runs, so their number already bounds the pool.
MAX_CONNECTIONS = 10_000


def _make(blocking: bool) -> redis.Redis:
    s = get_settings()
    return redis.Redis.from_url(
        s.REDIS_URL,
        socket_connect_timeout=s.REDIS_SOCKET_TIMEOUT,
        socket_timeout=(s.SSE_KEEPALIVE_SECONDS + 5) if blocking else max(s.REDIS_SOCKET_TIMEOUT, 1.0),
        health_check_interval=30,
        decode_responses=True,
        max_connections=MAX_CONNECTIONS,
    )


def _get(blocking: bool) -> redis.Redis:
    client = _clients.get(blocking)
    if client is None:
        with _lock:
            client = _clients.get(blocking) or _make(blocking)
            _clients[blocking] = client
    return client


def get_redis() -> redis.Redis:
    """Return this process's Redis client for ordinary commands (short socket timeout)."""
    return _get(False)


def get_blocking_redis() -> redis.Redis:
    """Return this process's Redis client for XREAD BLOCK (socket timeout past the SSE keep-alive)."""
    return _get(True)


def reset_redis() -> None:
    """Forget the clients (tests, and after fork)."""
    _clients.clear()
