"""Request and response schemas of /api/auth."""
from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from email_validator import validate_email
from pydantic import AfterValidator, BaseModel, Field

from api.schemas.common import JobEnvelope, Strict
from api.schemas.user import USERNAME_PATTERN

Purpose = Literal["register", "reset_password", "delete_account"]
CodeStr = Field(pattern=r"^[0-9]{6}$", description="the 6-digit code from the mail")
PasswordStr = Field(min_length=1, max_length=128)


def normalise_email(value: str) -> str:
    """The one form of an address, used wherever accounts are looked up, codes bound and limits keyed.

    NFKC (full-width and other compatibility spellings fold to one), the domain as IDNA
    (UTS 46) maps it (so `xn--` and Unicode spellings agree), the local part case-folded.
    Raises ValueError (email_validator's EmailNotValidError) when it is not an address.
    """
    checked = validate_email(unicodedata.normalize("NFKC", value.strip()), check_deliverability=False)
    folded = unicodedata.normalize("NFKC", checked.local_part.casefold()) + "@" + checked.domain
    return validate_email(folded, check_deliverability=False).normalized  # folding kept it an address, in length


Email = Annotated[str, Field(max_length=320, json_schema_extra={"format": "email"}), AfterValidator(normalise_email)]


class EmailBody(Strict):
    """A request body naming an account by email, normalised by normalise_email."""
    email: Email


class SendCodeBody(EmailBody):
    """Request of POST /api/auth/send-code: the address and what the code is for."""
    purpose: Purpose


class SendCodeResponse(JobEnvelope):
    """Response of POST /api/auth/send-code (202): the mail job, and how long the code stays valid."""
    message: str
    expires_in: int


class RegisterBody(EmailBody):
    """Request of POST /api/auth/register: email, password, the mailed code, an optional username."""
    password: str = PasswordStr
    code: str = CodeStr
    username: str | None = Field(None, min_length=3, max_length=40, pattern=USERNAME_PATTERN)


class LoginBody(EmailBody):
    """Request of POST /api/auth/login: email and password."""
    password: str = PasswordStr


class ResetPasswordBody(EmailBody):
    """Request of POST /api/auth/reset-password: email, the mailed code and the new password."""
    code: str = CodeStr
    new_password: str = PasswordStr


class TokenResponse(BaseModel):
    """Response of login, refresh and password change: a Bearer access and refresh token pair."""
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
