"""The user account: identity, password hash, profile, role and status."""
from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from shared.database import db, utcnow


class Role(str, enum.Enum):
    """What an account may do: student (the default at sign-up), tutor or admin."""
    student = "student"
    tutor = "tutor"
    admin = "admin"


class UserStatus(str, enum.Enum):
    """Whether an account can sign in (active) or not (disabled)."""
    active = "active"
    disabled = "disabled"


def new_id() -> str:
    """Return a new random id: 32 hex digits (uuid4)."""
    return uuid.uuid4().hex


class User(db.Model):
    """An account: email, password hash, profile, role, status and the token version of its tokens."""
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(40))
    full_name: Mapped[str | None] = mapped_column(String(120))
    bio: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16), default=Role.student.value)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.active.value)
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Carried in every token as `ver`; bumping it ends every token of the user at once.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @property
    def is_active(self) -> bool:
        """Whether the account may sign in and use its tokens (status active)."""
        return self.status == UserStatus.active.value


# Usernames are unique whatever their case: `Ada` and `ada` are one name.
Index("ux_users_username_lower", func.lower(User.username), unique=True)
