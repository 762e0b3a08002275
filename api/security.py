"""Who is calling: Bearer tokens on every protected route, or a short-lived signed URL
(shared.signing) for the resources a browser fetches without headers.

A signature is honoured only while what it was made for still holds: the account exists
and is active, its token version is unchanged, and its sign-in session was not revoked.
A response authorised by a signature carries plain URLs (`url_binding()` is None), so a
leaked link cannot renew itself.
"""
from __future__ import annotations

from functools import wraps

from flask import g, request

from api.errors import APIError
from api.extensions.jwt import session_of, session_revoked
from api.extensions.jwt import verify as verify_token
from api.services import identity
from api.services.identity import Caller
from shared.signing import ANONYMOUS, Binding, InvalidSignature, is_job_resource, verify


def authenticate(resource: str | None = None, kind: str = "access") -> Caller | None:
    """The caller, from a Bearer token or (for `resource`) a signed URL; None for an anonymous signature.

    No database read: the identity comes from Redis (api/services/identity.py); a view that
    needs the account's other fields loads it with `identity.account(caller)`."""
    sig = request.args.get("sig")
    if sig and resource and "Authorization" not in request.headers:
        try:
            binding = verify(sig, resource)
        except InvalidSignature as exc:
            raise APIError(401, exc.code, exc.message) from exc
        g.by_signature = True
        if binding.user_id is None:  # made for an ownerless job (get_owned checks which)
            if not is_job_resource(resource):
                raise APIError(401, "invalid_signature", "this link was not issued for this resource")
            g.signed_anonymous = True
            return None
        user = identity.get(binding.user_id)
        if (user is None or not user.is_active or user.token_version != binding.version
                or session_revoked(binding.session)):
            raise APIError(401, "token_revoked", "this link is no longer valid for this account")
        return user
    claims, caller = verify_token(kind)
    g.url_binding = Binding(caller.id, caller.token_version, session_of(claims))
    return caller


def url_binding() -> Binding | None:
    """Whom the URLs of this response are signed for: the Bearer caller's session, nobody
    (plain URLs) when a signature authorised the request, anonymous when no one signed in."""
    if g.get("by_signature"):
        return None
    return g.get("url_binding", ANONYMOUS)


def roles_required(*roles: str):
    """A view decorator: the caller (Bearer) must hold one of `roles`, else 403 `forbidden`."""
    def decorator(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            user = authenticate()
            if user.role not in roles:
                raise APIError(403, "forbidden", "your role does not allow this")
            return fn(*args, **kwargs)
        return wrapper
    return decorator
