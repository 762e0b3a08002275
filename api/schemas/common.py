"""Schemas used across areas: the error shape, job envelopes, paging."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from werkzeug.routing import BaseConverter

# Ids in paths (new_id(): 32 hex digits). Routes declare them as `<id:name>`, so anything else
# (a NUL, which PostgreSQL text cannot hold, a slash, an over-long value) matches no route and
# is a 404 before any view or query runs; the path models document the same shape.
ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
PathId = Annotated[str, Field(min_length=1, max_length=64, pattern=rf"^{ID_PATTERN}$")]


class IdConverter(BaseConverter):
    """The `id` URL converter: only what an id can look like (see ID_PATTERN)."""
    regex = ID_PATTERN


class Strict(BaseModel):
    """Request bodies refuse fields they do not know (mass assignment), and NUL characters in
    strings (PostgreSQL text cannot hold them: they would fail at the database as a 500)."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value


class ErrorDetail(BaseModel):
    """The body of the error shape: a machine code, a message, and details when there are any."""
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The error shape every 4xx and 5xx answers: `{"error": {"code", "message", "details"}}`."""
    error: ErrorDetail


class MessageResponse(BaseModel):
    """A response that only says what was done, in `message`."""
    message: str


class JobEnvelope(BaseModel):
    """What every endpoint that queues work answers (202), beside the fields of what it made."""
    job_id: str
    status_url: str = Field(description="GET for the job record; carries a short-lived signature")
    events_url: str = Field(description="Server-Sent Events; carries a short-lived signature for EventSource")


class JobOut(BaseModel):
    """A job's record as /api/jobs answers it, with its signed status and events URLs."""
    id: str
    kind: str
    state: str
    progress: float
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: int
    request_id: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    status_url: str
    events_url: str


class PageQuery(Strict):
    """Query of a paged list: limit (1-100) and offset."""
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1_000_000)


ERRORS = {400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse, 429: ErrorResponse,
          503: ErrorResponse}
