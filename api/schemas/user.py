"""Request and response schemas of /api/user and /api/admin."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import PathId, Strict

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


class UserOut(BaseModel):
    """An account as /api/user and /api/admin answer it (never its password hash)."""
    id: str
    email: str
    username: str | None = None
    full_name: str | None = None
    bio: str | None = None
    phone: str | None = None
    role: str
    status: str
    email_verified_at: datetime | None = None
    created_at: datetime


class ProfileUpdate(Strict):
    """Only these fields can be changed by their owner; any other field is refused by name."""
    username: str | None = Field(None, min_length=3, max_length=40, pattern=USERNAME_PATTERN)
    full_name: str | None = Field(None, max_length=120)
    bio: str | None = Field(None, max_length=2000)
    phone: str | None = Field(None, max_length=32, pattern=r"^\+?[0-9 ()-]{6,32}$")


class ChangePasswordBody(Strict):
    """Request of POST /api/user/password: the current password and the new one."""
    current_password: str = Field(min_length=1, max_length=128)
    new_password: str = Field(min_length=1, max_length=128)


class DeleteAccountBody(Strict):
    """Request of DELETE /api/user/account: the code mailed for purpose delete_account."""
    code: str = Field(pattern=r"^[0-9]{6}$")


class UserPath(BaseModel):
    """Path of /api/admin/users/<user_id>."""
    user_id: PathId


class AdminUserQuery(Strict):
    """Query of GET /api/admin/users: paging, filters on role and status, and a search on email or username."""
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1_000_000)
    role: Literal["student", "tutor", "admin"] | None = None
    status: Literal["active", "disabled"] | None = None
    q: str | None = Field(None, max_length=254, description="substring of email or username")


class AdminUserPatch(Strict):
    """Request of PATCH /api/admin/users/<user_id>: a new role, status, or both."""
    role: Literal["student", "tutor", "admin"] | None = None
    status: Literal["active", "disabled"] | None = None


class UserPage(BaseModel):
    """Response of GET /api/admin/users: one page of accounts."""
    items: list[UserOut]
    total: int
    limit: int
    offset: int
