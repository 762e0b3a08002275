"""The account lifecycle: codes, sign-up, sign-in, token rotation, sign-out, passwords, erasure."""
from __future__ import annotations

import time
import uuid

from flask import request
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from api.errors import APIError
from api.extensions.jwt import claims as token_claims
from api.extensions.jwt import revoke_session, revoked_key, session_of
from api.extensions.limiter import client_address
from api.services import codes, files, identity, login_throttle
from api.services.identity import Caller
from api.services.jobs import enqueue, envelope
from api.services.passwords import check_policy, hash_password, verify_password
from shared.database import db, utcnow, write_tx
from shared.models import AudioClip, Chunk, Job, Role, User
from shared.payloads import MailPayload
from shared.redis_client import get_redis
from shared.retrieval.builtin import index_changed
from shared.settings import get_settings
from shared.storage import get_storage

# purpose -> (template when the account exists, template when it does not)
CODE_TEMPLATES = {
    "register": ("account_exists", "code_register"),
    "reset_password": ("code_reset_password", "no_account"),
    "delete_account": ("code_delete_account", "no_account"),
}


def find_by_email(email: str) -> User | None:
    """Return the account with this (normalised) email, or None."""
    return db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()


def send_code(email: str, purpose: str) -> dict:
    """Queue the mail; the answer is the same whether or not the address has an account."""
    codes.throttle_send(email, purpose, client_address())
    exists = find_by_email(email) is not None
    template = CODE_TEMPLATES[purpose][0 if exists else 1]
    context: dict = {"purpose": purpose, "minutes": get_settings().CODE_TTL // 60}
    if template.startswith("code_"):
        context["code"] = codes.issue(email, purpose)
    job = enqueue("mail", None, MailPayload(to=email, template=template, context=context))
    return {**envelope(job.id), "message": "If this address can receive it, a code is on its way.",
            "expires_in": get_settings().CODE_TTL}


def register(email: str, password: str, code: str, username: str | None) -> User:
    """Create a student account; nothing about other accounts is said before the code is right.

    A taken username leaves the code usable: the student picks another name without a new mail.
    """
    check_policy(password, email)
    codes.check(email, "register", code)
    if find_by_email(email) is not None:
        raise _email_taken()
    if username and _username_taken(username):
        raise _username_conflict()
    codes.spend(email, "register")
    user = User(email=email, password_hash=hash_password(password), username=username,
                role=Role.student.value, email_verified_at=utcnow())
    try:
        with write_tx():
            db.session.add(user)
    except IntegrityError as exc:  # a concurrent sign-up took the address or the username first
        raise (_email_taken() if find_by_email(email) is not None else _username_conflict()) from exc
    return user


def _email_taken() -> APIError:
    return APIError(409, "email_taken", "an account with this email already exists; sign in instead")


def _username_conflict() -> APIError:
    return APIError(409, "username_taken", "that username is taken", {"field": "username"})


def _username_taken(username: str, except_id: str | None = None) -> bool:
    """Whether another account has this username, in any case (the unique index settles races)."""
    stmt = select(func.count()).select_from(User).where(func.lower(User.username) == username.lower())
    if except_id:
        stmt = stmt.where(User.id != except_id)
    return db.session.execute(stmt).scalar_one() > 0


def issue_tokens(user: User | Caller, session: str | None = None) -> dict:
    """An access and a refresh token of one sign-in session: a new one unless `session` continues it."""
    claims = {"ver": user.token_version, "sid": session or uuid.uuid4().hex}
    refresh = create_refresh_token(identity=user.id, additional_claims=claims)
    access = create_access_token(identity=user.id, additional_claims={**claims, "role": user.role})
    return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
            "expires_in": get_settings().JWT_ACCESS_TOKEN_EXPIRES}


def login(email: str, password: str) -> dict:
    """Check email and password (throttled per address and IP: 429) and issue tokens; 401 if wrong, 403 if disabled."""
    ip = request.remote_addr or "-"
    login_throttle.sign_in.check(email, ip)
    user = find_by_email(email)
    if not verify_password(user.password_hash if user else None, password) or user is None:
        login_throttle.sign_in.failed(email, ip)
        raise APIError(401, "invalid_credentials", "the email or password is wrong")
    if not user.is_active:
        raise APIError(403, "account_disabled", "this account is disabled")
    login_throttle.sign_in.succeeded(email, ip)
    return issue_tokens(user)


def _revoke(jti: str, expires_at: float) -> bool:
    """Blocklist a token id until it would expire anyway; False if it already was."""
    ttl = max(1, int(expires_at - time.time()) + 1)
    return bool(get_redis().set(revoked_key(jti), "1", ex=ttl, nx=True))


def refresh(user: Caller) -> dict:
    """Rotate: the presented refresh token is spent, a new pair of the same session is issued.

    A refresh token already spent (here: by a concurrent use) ends its whole session.
    """
    claims = token_claims()
    if not _revoke(claims["jti"], claims["exp"]):
        revoke_session(session_of(claims))
        raise APIError(401, "token_revoked", "the token has been revoked")
    return issue_tokens(user, session_of(claims))


def logout() -> None:
    """End the caller's sign-in session: every access and refresh token of it, at once."""
    revoke_session(session_of(token_claims()))


def _set_password(user: User, password: str) -> None:
    check_policy(password, user.email)
    with identity.changing(user.id), write_tx():
        user = db.session.merge(user)
        user.password_hash = hash_password(password)
        user.token_version += 1  # every existing token of the user stops working


def reset_password(email: str, code: str, new_password: str) -> None:
    """Set a new password with the code mailed for reset_password; every existing token of the user stops working."""
    check_policy(new_password, email)
    codes.consume(email, "reset_password", code)
    user = find_by_email(email)
    if user is None:
        raise codes.wrong_code()
    _set_password(user, new_password)


def change_password(user: User, current: str, new: str) -> dict:
    """Check the current password (throttled), set the new one, and return a fresh token pair (old tokens end)."""
    ip = request.remote_addr or "-"
    login_throttle.password_check.check(user.id, ip)
    if not verify_password(user.password_hash, current):
        login_throttle.password_check.failed(user.id, ip)
        raise APIError(400, "invalid_credentials", "the current password is wrong", {"field": "current_password"})
    login_throttle.password_check.succeeded(user.id, ip)
    _set_password(user, new)
    db.session.refresh(user)
    return issue_tokens(user)


def delete_account(user: User, code: str) -> None:
    """Erase the account and everything it owns (jobs now; more as features arrive)."""
    codes.consume(user.email, "delete_account", code)
    blobs = files.storage_keys_of(user.id) + list(db.session.execute(
        select(AudioClip.storage_key).where(AudioClip.user_id == user.id)).scalars())
    with identity.changing(user.id), write_tx():  # conversations, messages, files, chunks go with it (CASCADE)
        db.session.execute(delete(Chunk).where(Chunk.user_id == user.id))
        db.session.execute(delete(Job).where(Job.user_id == user.id))
        db.session.execute(delete(User).where(User.id == user.id))
    storage = get_storage()
    for key in blobs:
        storage.delete(key)
    index_changed(deleted=True)
    logout()


def update_profile(user: User, fields: dict) -> User:
    """Write the given profile fields of the account; 409 username_taken if another account has the username."""
    if fields.get("username") and _username_taken(fields["username"], except_id=user.id):
        raise _username_conflict()
    try:
        with write_tx():
            user = db.session.merge(user)
            for name, value in fields.items():
                setattr(user, name, value)
    except IntegrityError as exc:  # a concurrent rename took the username first (the unique index)
        raise _username_conflict() from exc
    return user
