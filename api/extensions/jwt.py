"""JWT access and refresh tokens (made by flask-jwt-extended, checked by `verify` with PyJWT) with a Redis
blocklist of sign-in sessions.

Every sign-in is a session: its access and refresh tokens carry its id (`sid`), and a
refresh keeps it. A spent refresh token's id (`jti`) is blocklisted; a revoked session
(`jwt:session:<sid>`, kept as long as a refresh token lives) ends every token of it at
once: logout does that, and so does a spent refresh token presented again (a stolen one).
Both are checked in one round trip, with the user's identity record (api/services/identity.py:
token version, status and role; no database read). Tokens carry the user's `token_version`
(`ver`) too, so that a password reset or a disabled account ends every token at once. A
check that cannot reach Redis fails closed (503). Tokens made before sessions (no `sid`)
are each their own family, named by their refresh token's jti. Errors answer fixed
messages per code, never the library's text.
"""
from __future__ import annotations

from datetime import timedelta

import jwt as pyjwt
from flask import Flask, g, request
from flask_jwt_extended import JWTManager

from api.errors import APIError
from api.services import identity
from api.services.identity import Caller
from shared.redis_client import get_redis
from shared.settings import get_settings

jwt = JWTManager()

# Answers that carry tokens are never stored (RFC 6749 section 5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

MESSAGES = {
    "missing_token": "authentication required: send Authorization: Bearer <token>",
    "invalid_token": "the token is not valid",
    "token_expired": "the token has expired",
    "token_revoked": "the token has been revoked",
}


def revoked_key(jti: str) -> str:
    """Return the Redis key that blocklists one token by its jti."""
    return f"jwt:revoked:{jti}"


def session_key(sid: str) -> str:
    """Return the Redis key that marks a sign-in session revoked."""
    return f"jwt:session:{sid}"


def session_of(payload: dict) -> str:
    """A token's sign-in session; a token from before sessions is its own family (its refresh token's jti)."""
    return payload.get("sid") or payload.get("rjti") or payload["jti"]


def revoke_session(sid: str) -> None:
    """End every access and refresh token of a sign-in session, and the links signed for it."""
    get_redis().set(session_key(sid), "1", ex=get_settings().JWT_REFRESH_TOKEN_EXPIRES)


def session_revoked(sid: str) -> bool:
    """Whether a sign-in session has been revoked (one Redis EXISTS)."""
    return bool(get_redis().exists(session_key(sid)))


def init_app(app: Flask) -> None:
    """Configure flask-jwt-extended, which makes the tokens (HS256, lifetimes from settings); `verify` checks them."""
    s = get_settings()
    app.config.update(
        JWT_SECRET_KEY=s.JWT_SECRET_KEY,
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=s.JWT_ACCESS_TOKEN_EXPIRES),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(seconds=s.JWT_REFRESH_TOKEN_EXPIRES),
        JWT_ERROR_MESSAGE_KEY="message",
    )
    jwt.init_app(app)


def _rejected(code: str) -> APIError:
    return APIError(401, code, MESSAGES[code], None, {"WWW-Authenticate": "Bearer"})


def verify(kind: str = "access") -> tuple[dict, Caller]:
    """The claims and the caller of this request's Bearer token of `kind` ("access" or "refresh").

    PyJWT checks the signature (HS256) and lifetime; then one Redis round trip reads the token's
    and its session's revocation keys with the user's identity record (no database read unless
    that record is missing). 401 with a fixed message per code otherwise. The claims are kept
    for `claims()`.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer":
        raise _rejected("missing_token")
    try:
        payload = pyjwt.decode(token.strip(), get_settings().JWT_SECRET_KEY, algorithms=["HS256"],
                               options={"require": ["sub", "jti", "type"]})
    except pyjwt.ExpiredSignatureError:
        raise _rejected("token_expired") from None
    except pyjwt.PyJWTError:
        raise _rejected("invalid_token") from None
    if payload["type"] != kind or not isinstance(payload["sub"], str):
        raise _rejected("invalid_token")
    sid = session_of(payload)
    pipe = get_redis().pipeline(transaction=False)
    pipe.exists(revoked_key(payload["jti"]), session_key(sid))
    pipe.get(identity.key(payload["sub"]))
    revoked, record = pipe.execute()
    if revoked:
        if kind == "refresh":
            revoke_session(sid)  # a spent refresh token used again was stolen: its whole family ends
        raise _rejected("token_revoked")
    caller = identity.decode(payload["sub"], record) or identity.load(payload["sub"])
    if caller is None or not caller.is_active or payload.get("ver") != caller.token_version:
        raise _rejected("token_revoked")
    g.jwt_claims = payload
    return payload, caller


def claims() -> dict:
    """The claims of the token `verify` accepted for this request."""
    return g.jwt_claims
