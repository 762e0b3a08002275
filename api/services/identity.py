"""Who a token's user is, kept in Redis beside the revocation keys: token version, status and role.

A Bearer request is authorised in one Redis round trip (the token's and its session's
revocation keys and this record, api/extensions/jwt.py) and no database read. The record is
written through on every change of those three facts (`changing(user_id)` around the commit
that changes them: it is deleted before, and written after) and expires after IDENTITY_TTL
seconds; a missing one is read from the database and stored with SET NX, so a change's own
write wins over a read that raced it. Views that need the rest of the account load it
(`account()`).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select

from api.errors import APIError
from shared.database import db
from shared.models import User
from shared.models.user import UserStatus
from shared.redis_client import get_redis

IDENTITY_TTL = 300  # seconds; a change writes it through, so this bounds only what a lost write leaves


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user as authorisation needs it (the full row: `account()`)."""

    id: str
    token_version: int
    status: str
    role: str

    @property
    def is_active(self) -> bool:
        """Whether the account may act (not disabled)."""
        return self.status == UserStatus.active.value


def key(user_id: str) -> str:
    """The Redis key of a user's identity record."""
    return f"user:{user_id}:identity"


def _encode(c: Caller) -> str:
    return f"{c.token_version}|{c.status}|{c.role}"


def decode(user_id: str, raw: bytes | str | None) -> Caller | None:
    """A stored identity record -> Caller (None when there is none)."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    version, status, role = text.split("|", 2)
    return Caller(user_id, int(version), status, role)


_ROW = select(User.token_version, User.status, User.role)


def load(user_id: str, overwrite: bool = False) -> Caller | None:
    """The identity from the database (None: no such user), stored in Redis: unless a change
    wrote it first, or (`overwrite`, the change's own write) whatever is there."""
    row = db.session.execute(_ROW.where(User.id == user_id)).first()
    db.session.commit()  # end the read
    if row is None:
        return None
    caller = Caller(user_id, row.token_version, row.status, row.role)
    get_redis().set(key(user_id), _encode(caller), ex=IDENTITY_TTL, nx=not overwrite)
    return caller


def get(user_id: str) -> Caller | None:
    """The identity, from Redis or else the database."""
    return decode(user_id, get_redis().get(key(user_id))) or load(user_id)


@contextmanager
def changing(user_id: str) -> Iterator[None]:
    """Around a change of a user's token version, status or role (or its deletion): the record is
    dropped first (a change that cannot reach Redis is not made) and written from the row after."""
    get_redis().delete(key(user_id))
    yield
    load(user_id, overwrite=True)  # over whatever a read that raced the change stored meanwhile


def account(caller: Caller) -> User:
    """The caller's full account row (profile, email, password hash)."""
    user = db.session.get(User, caller.id)
    if user is None:
        raise APIError(401, "token_revoked", "the token has been revoked")
    return user
