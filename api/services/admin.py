"""Admin operations on users."""
from __future__ import annotations

from sqlalchemy import func, or_, select

from api.errors import APIError
from api.services import identity
from api.services.identity import Caller
from shared.database import db, write_tx
from shared.models import User, UserStatus


def list_users(limit: int, offset: int, role: str | None, status: str | None, q: str | None):
    """Return a page of accounts, newest first, filtered by role, status and email/username substring; and the total."""
    stmt = select(User)
    if role:
        stmt = stmt.where(User.role == role)
    if status:
        stmt = stmt.where(User.status == status)
    if q:
        like = f"%{q.lower().replace('%', '').replace('_', '')}%"
        stmt = stmt.where(or_(func.lower(User.email).like(like), func.lower(User.username).like(like)))
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    items = db.session.execute(stmt.order_by(User.created_at.desc(), User.id).limit(limit).offset(offset)).scalars()
    return list(items), total


def update_user(actor: Caller, user_id: str, changes: dict) -> User:
    """Change another user's role or status (disabling ends their tokens); 404 if unknown, 400 if it is the caller."""
    user = db.session.get(User, user_id) if len(user_id) <= 64 else None
    if user is None:
        raise APIError(404, "not_found", "no such user")
    if user.id == actor.id and changes:
        raise APIError(400, "cannot_change_self", "admins cannot change their own role or status")
    with identity.changing(user.id), write_tx():
        user = db.session.merge(user)
        if "role" in changes and changes["role"]:
            user.role = changes["role"]
        if "status" in changes and changes["status"] and changes["status"] != user.status:
            user.status = changes["status"]
            if changes["status"] == UserStatus.disabled.value:
                user.token_version += 1
    return user
