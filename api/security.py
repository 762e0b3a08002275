"""Who is calling: Bearer tokens on every protected route, or a short-lived signed URL
(shared.signing) for the resources a browser fetches without headers.
"""
from __future__ import annotations

from functools import wraps

from flask import g, request
from flask_jwt_extended import current_user, verify_jwt_in_request

from api.errors import APIError
from shared.database import db
from shared.models import User
from shared.signing import ANONYMOUS, InvalidSignature, verify


def authenticate(resource: str | None = None) -> User | None:
    """The caller, from a Bearer token or (for `resource`) a signed URL; None for an anonymous signature."""
    sig = request.args.get("sig")
    if sig and resource and "Authorization" not in request.headers:
        try:
            uid = verify(sig, resource)
        except InvalidSignature as exc:
            raise APIError(401, exc.code, exc.message) from exc
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
