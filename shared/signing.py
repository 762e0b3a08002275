"""Short-lived signed URLs: an expiring signature bound to a user and a resource.

Browsers cannot put a Bearer header on EventSource or `<audio>`, so the URLs we hand out
carry `?sig=`. The API and the worker (for URLs inside job events) both sign.
"""
from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from shared.settings import get_settings

ANONYMOUS = "-"


class InvalidSignature(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().SECRET_KEY, salt="signed-url")


def sign(user_id: str | None, resource: str) -> str:
    return _serializer().dumps({"u": user_id or ANONYMOUS, "r": resource})


def signed_url(path: str, user_id: str | None, resource: str) -> str:
    base = get_settings().PUBLIC_BASE_URL.rstrip("/")
    return f"{base}{path}?sig={sign(user_id, resource)}"


def verify(token: str, resource: str) -> str:
    """The user id the signature was made for (ANONYMOUS for none); raises InvalidSignature."""
    try:
        data = _serializer().loads(token, max_age=get_settings().SIGNED_URL_EXPIRES)
    except SignatureExpired:
        raise InvalidSignature("signature_expired", "this link has expired; fetch a fresh one")
    except BadSignature:
        raise InvalidSignature("invalid_signature", "this link's signature is not valid")
    if not isinstance(data, dict) or data.get("r") != resource:
        raise InvalidSignature("invalid_signature", "this link was not issued for this resource")
    return data.get("u") or ANONYMOUS


def audio_url(user_id: str | None, audio_id: str) -> str:
    return signed_url(f"/api/audio/{audio_id}", user_id, f"audio:{audio_id}")


def job_urls(job_id: str, user_id: str | None) -> dict[str, str]:
    """A job's status_url and events_url, signed for its owner."""
    resource = f"job:{job_id}"
    return {"status_url": signed_url(f"/api/jobs/{job_id}", user_id, resource),
            "events_url": signed_url(f"/api/jobs/{job_id}/events", user_id, resource)}
