"""Short-lived signed URLs: an expiring signature bound to a sign-in and a resource.

Browsers cannot put a Bearer header on EventSource or `<audio>`, so the URLs we hand out
carry `?sig=`. A signature names the user, the user's token version and the sign-in
session it was made for (a `Binding`); api.security.authenticate checks all three, so a
password change or reset, a disabled or deleted account, and logging out of that session
end it. The API signs for the caller's session; the worker signs the URLs it puts into a
job's events for the session that made the job (`job_binding`). Ownerless jobs (sign-up
mail) get anonymous signatures, good for those jobs only. A response authorised by a
signature carries plain URLs (binding None): a link never renews itself.
"""
from __future__ import annotations

from typing import NamedTuple

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from shared.database import db
from shared.models import Job, User
from shared.settings import get_settings

_NOBODY = "-"


class Binding(NamedTuple):
    """Whom a signature is made for: a user at a token version in a sign-in session."""

    user_id: str | None
    version: int | None = None
    session: str | None = None


ANONYMOUS = Binding(None)


class InvalidSignature(Exception):
    """Raised by verify: the signature is expired, forged or for another resource; `code` names which."""
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().SECRET_KEY, salt="signed-url")


def sign(binding: Binding, resource: str) -> str:
    """A signature of `resource` for `binding` (anonymous when it has no user)."""
    data: dict = {"u": binding.user_id or _NOBODY, "r": resource}
    if binding.user_id:
        data.update(v=binding.version, s=binding.session)
    return _serializer().dumps(data)


def signed_url(path: str, binding: Binding | None, resource: str) -> str:
    """The absolute URL of `path`, signed for `binding`; without a signature when binding is None."""
    url = get_settings().PUBLIC_BASE_URL.rstrip("/") + path
    return url if binding is None else f"{url}?sig={sign(binding, resource)}"


def verify(token: str, resource: str) -> Binding:
    """Whom the signature was made for (ANONYMOUS for nobody); raises InvalidSignature."""
    try:
        data = _serializer().loads(token, max_age=get_settings().SIGNED_URL_EXPIRES)
    except SignatureExpired:
        raise InvalidSignature("signature_expired", "this link has expired; fetch a fresh one") from None
    except BadSignature:
        raise InvalidSignature("invalid_signature", "this link's signature is not valid") from None
    if not isinstance(data, dict) or data.get("r") != resource:
        raise InvalidSignature("invalid_signature", "this link was not issued for this resource")
    if data.get("u") in (None, _NOBODY):
        return ANONYMOUS
    if not isinstance(data.get("v"), int) or not isinstance(data.get("s"), str):  # made before sessions
        raise InvalidSignature("invalid_signature", "this link's signature is not valid")
    return Binding(data["u"], data["v"], data["s"])


def job_resource(job_id: str) -> str:
    """What a job's status and events URLs are signed for (the only kind an anonymous signature opens)."""
    return f"job:{job_id}"


def file_resource(file_id: str) -> str:
    """What a file's download URL is signed for."""
    return f"file:{file_id}"


def audio_resource(audio_id: str) -> str:
    """What an audio clip's URL is signed for."""
    return f"audio:{audio_id}"


def is_job_resource(resource: str) -> bool:
    """Whether `resource` names a job (job_resource)."""
    return resource.startswith("job:")


def audio_url(binding: Binding | None, audio_id: str) -> str:
    """An audio clip's URL, signed for `binding` (plain when None)."""
    return signed_url(f"/api/audio/{audio_id}", binding, audio_resource(audio_id))


def file_download_url(binding: Binding | None, file_id: str) -> str:
    """A file's download URL, signed for `binding` (plain when None)."""
    return signed_url(f"/api/files/{file_id}/download", binding, file_resource(file_id))


def job_urls(job_id: str, binding: Binding | None) -> dict[str, str]:
    """A job's status_url and events_url, signed for `binding` (plain when None)."""
    resource = job_resource(job_id)
    return {"status_url": signed_url(f"/api/jobs/{job_id}", binding, resource),
            "events_url": signed_url(f"/api/jobs/{job_id}/events", binding, resource)}


def job_binding(job_id: str) -> Binding | None:
    """The binding of the sign-in session that made a job, for the URLs a worker puts into its events.

    ANONYMOUS for an ownerless job; None (plain URLs) when the job, its user or its session
    is unknown. Ends the read transaction, so a long task holds no snapshot.
    """
    row = db.session.execute(select(Job.user_id, Job.session_id, User.token_version)
                             .outerjoin(User, User.id == Job.user_id).where(Job.id == job_id)).first()
    db.session.commit()
    if row is None:
        return None
    if row.user_id is None:
        return ANONYMOUS
    if row.token_version is None or not row.session_id:
        return None
    return Binding(row.user_id, row.token_version, row.session_id)
