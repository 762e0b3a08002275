"""Request and response schemas of /api/auth."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, EmailStr, Field, field_validator

from api.schemas.common import JobEnvelope, Strict
from api.schemas.user import USERNAME_PATTERN

Purpose = Literal["register", "reset_password", "delete_account"]
CodeStr = Field(pattern=r"^[0-9]{6}$", description="the 6-digit code from the mail")
PasswordStr = Field(min_length=1, max_length=128)


def normalise_email(value: str) -> str:
    return value.strip().lower()


class EmailBody(Strict):
    email: EmailStr

    @field_validator("email")
    @classmethod
    def _norm(cls, v: str) -> str:
        return normalise_email(v)


class SendCodeBody(EmailBody):
    purpose: Purpose


class SendCodeResponse(JobEnvelope):
    message: str
    expires_in: int


class RegisterBody(EmailBody):
    password: str = PasswordStr
    code: str = CodeStr
    username: str | None = Field(None, min_length=3, max_length=40, pattern=USERNAME_PATTERN)


class LoginBody(EmailBody):
    password: str = PasswordStr


class ResetPasswordBody(EmailBody):
    code: str = CodeStr
    new_password: str = PasswordStr


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
