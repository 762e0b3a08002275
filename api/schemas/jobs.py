"""Request and response schemas of /api/jobs, and the documented shape of one SSE event."""
from __future__ import annotations

import re

from pydantic import BaseModel, Field

from api.schemas.common import JobOut, PathId, Strict

EVENT_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")

# One event of the stream (Open API 3.1 without `itemSchema`: a text/event-stream `schema`
# describes each event, as an object of its fields). The stream opens with `retry: 2000` and
# carries `: keep-alive` comments, which are not events.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": EVENT_ID.pattern,
               "description": "the Redis stream entry id; send it back as Last-Event-ID to resume"},
        "event": {"type": "string", "description": "progress, token, restarted, speech, audio and other "
                                                   "kind-specific events, then one of done, error or cancelled"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"type": "object"}},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["event", "data"],
}


class JobPath(BaseModel):
    """Path of /api/jobs/<job_id>."""
    job_id: PathId


class JobListQuery(Strict):
    """Query of GET /api/jobs: paging, and filters on kind and state."""
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1_000_000)
    kind: str | None = Field(None, max_length=32)
    state: str | None = Field(None, max_length=16)


class JobPage(BaseModel):
    """Response of GET /api/jobs: one page of the user's jobs."""
    items: list[JobOut]
    total: int
    limit: int
    offset: int
