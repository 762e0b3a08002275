"""Password hashing (argon2id) and the password policy."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api.errors import APIError

_hasher = PasswordHasher()
# Verified against when the account does not exist, so both paths cost the same.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0")

MIN_LENGTH = 10
COMMON = {"password123", "1234567890", "qwertyuiop", "password1234", "iloveyou123", "letmein1234",
          "administrator", "0123456789", "passw0rd123", "welcome123"}


def check_policy(password: str, email: str = "") -> None:
    """Raise 400 weak_password naming every rule the password breaks (length, common, contains the email)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"at least {MIN_LENGTH} characters")
    if len(password) > 128:
        problems.append("at most 128 characters")
    if password.lower() in COMMON or len(set(password)) < 4:
        problems.append("not a common or repetitive password")
    local = email.split("@", 1)[0].lower()
    if len(local) >= 4 and local in password.lower():
        problems.append("not containing your email address")
    if problems:
        raise APIError(400, "weak_password", "the password must be " + ", ".join(problems),
                       {"field": "password", "rules": problems})


def hash_password(password: str) -> str:
    """Return the password's argon2id hash."""
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether the password matches the hash; with no hash (no account) a dummy is checked, so both cost the same."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
