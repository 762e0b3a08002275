"""Who is calling: Bearer tokens on every protected route, and short-lived signed URLs.

A browser cannot put a header on EventSource or `<audio>`, so the URLs we hand out for a
resource also carry `sig`: an expiring signature bound to the user and that resource.
"""
from __future__ import annotations

from functools import wraps

from flask import g, request
from flask_jwt_extended import current_user, verify_jwt_in_request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from api.errors import APIError
from shared.database import db
from shared.models import User
from shared.settings import get_settings

ANONYMOUS = "-"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().SECRET_KEY, salt="signed-url")


def sign(user_id: str | None, resource: str) -> str:
    return _serializer().dumps({"u": user_id or ANONYMOUS, "r": resource})


def signed_url(path: str, user_id: str | None, resource: str) -> str:
    base = get_settings().PUBLIC_BASE_URL.rstrip("/")
    return f"{base}{path}?sig={sign(user_id, resource)}"


def _verify_signature(token: str, resource: str) -> str:
    try:
        data = _serializer().loads(token, max_age=get_settings().SIGNED_URL_EXPIRES)
    except SignatureExpired:
        raise APIError(401, "signature_expired", "this link has expired; fetch a fresh one")
    except BadSignature:
        raise APIError(401, "invalid_signature", "this link's signature is not valid")
    if not isinstance(data, dict) or data.get("r") != resource:
        raise APIError(401, "invalid_signature", "this link was not issued for this resource")
    return data.get("u") or ANONYMOUS


def authenticate(resource: str | None = None) -> User | None:
    """The caller, from a Bearer token or (for `resource`) a signed URL; None for an anonymous signature."""
    sig = request.args.get("sig")
    if sig and resource and "Authorization" not in request.headers:
        uid = _verify_signature(sig, resource)
        if uid == ANONYMOUS:
            g.signed_anonymous = True
            return None
        user = db.session.get(User, uid)
        if user is None or not user.is_active:
            raise APIError(401, "token_revoked", "this link is no longer valid for this account")
        return user
    verify_jwt_in_request()
    return current_user


def login_required(fn):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        authenticate()
        return fn(*args, **kwargs)
    return wrapper


def roles_required(*roles: str):
    def decorator(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            user = authenticate()
            if user.role not in roles:
                raise APIError(403, "forbidden", "your role does not allow this")
            return fn(*args, **kwargs)
        return wrapper
    return decorator
