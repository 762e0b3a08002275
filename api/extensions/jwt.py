"""JWT access and refresh tokens (flask-jwt-extended) with a Redis blocklist.

Access tokens carry the jti of their refresh token (`rjti`) so that logout revokes both, and
the user's `token_version` (`ver`) so that a password reset or a disabled account ends every
token at once. A revoked-token check that cannot reach Redis fails closed (503).
"""
from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask_jwt_extended import JWTManager

from api.errors import error_response
from shared.database import db
from shared.models import User
from shared.redis_client import get_redis
from shared.settings import get_settings

jwt = JWTManager()


def revoked_key(jti: str) -> str:
    return f"jwt:revoked:{jti}"


def init_app(app: Flask) -> None:
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


@jwt.token_in_blocklist_loader
def _is_revoked(_header, payload) -> bool:
    return bool(get_redis().exists(revoked_key(payload["jti"])))


@jwt.user_lookup_loader
def _load_user(_header, payload):
    user = db.session.get(User, payload["sub"])
    if user is None or not user.is_active or payload.get("ver") != user.token_version:
        return None
    return user


def _unauthorized(code: str, message: str):
    return error_response(401, code, message, None, {"WWW-Authenticate": "Bearer"})


@jwt.unauthorized_loader
def _missing(reason: str):
    return _unauthorized("missing_token", "authentication required: send Authorization: Bearer <token>")


@jwt.invalid_token_loader
def _invalid(reason: str):
    return _unauthorized("invalid_token", f"invalid token: {reason}")


@jwt.expired_token_loader
def _expired(_header, payload):
    return _unauthorized("token_expired", f"the {payload.get('type', '')} token has expired".replace("  ", " "))


@jwt.revoked_token_loader
def _revoked(_header, _payload):
    return _unauthorized("token_revoked", "the token has been revoked")


@jwt.user_lookup_error_loader
def _user_gone(_header, _payload):
    return _unauthorized("token_revoked", "the token is no longer valid for this account")
