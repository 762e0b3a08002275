"""/api/jobs: a job's record, its live events (SSE), listing and cancellation."""
from __future__ import annotations

import re

import redis
from flask import Response, current_app, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from api.errors import APIError
from api.schemas.common import ERRORS, ErrorResponse, JobOut, PathId, Strict
from api.security import authenticate
from api.services import jobs as job_service
from api.services import sse
from api.services.stream_slots import StreamSlot
from shared.database import db
from shared.models import Job

bp = APIBlueprint("jobs", __name__, url_prefix="/api/jobs", abp_tags=[Tag(name="jobs")],
                  abp_security=[{"bearer": []}, {"signed_url": []}], abp_responses=ERRORS)

_EVENT_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")

# One event of the stream (Open API 3.1 without `itemSchema`: a text/event-stream `schema`
# describes each event, as an object of its fields). The stream opens with `retry: 2000` and
# carries `: keep-alive` comments, which are not events.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": _EVENT_ID.pattern,
               "description": "the Redis stream entry id; send it back as Last-Event-ID to resume"},
        "event": {"type": "string", "description": "progress, token, restarted, speech, audio and other "
                                                   "kind-specific events, then one of done, error or cancelled"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"type": "object"}},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["event", "data"],
}


class JobPath(BaseModel):
    job_id: PathId


class JobListQuery(Strict):
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1_000_000)
    kind: str | None = Field(None, max_length=32)
    state: str | None = Field(None, max_length=16)


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


def final_event(job: Job) -> tuple[str, dict] | None:
    if job.state == "succeeded":
        return "done", {"state": job.state, "result": job.result}
    if job.state == "failed":
        return "error", {"state": job.state, "error": job.error}
    if job.state == "cancelled":
        return "cancelled", {"state": job.state, "error": job.error}
    return None


@bp.get("", responses={200: JobPage})
def list_jobs(query: JobListQuery):
    """The caller's jobs, newest first."""
    user = authenticate()
    stmt = select(Job).where(Job.user_id == user.id)
    if query.kind:
        stmt = stmt.where(Job.kind == query.kind)
    if query.state:
        stmt = stmt.where(Job.state == query.state)
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.session.execute(stmt.order_by(Job.created_at.desc(), Job.id).limit(query.limit)
                              .offset(query.offset)).scalars()
    return {"items": [job_service.to_dict(j) for j in rows], "total": total,
            "limit": query.limit, "offset": query.offset}


@bp.get("/<id:job_id>", responses={200: JobOut})
def get_job(path: JobPath):
    """The job record: state, progress, result or error. Bearer header or the signed status_url."""
    user = authenticate(job_service.resource(path.job_id))
    return job_service.to_dict(job_service.get_owned(path.job_id, user))


@bp.delete("/<id:job_id>", responses={200: JobOut, 409: ErrorResponse})
def cancel_job(path: JobPath):
    """Cancel a queued or running job (409 when it has already ended)."""
    user = authenticate()
    return job_service.to_dict(job_service.cancel(job_service.get_owned(path.job_id, user)))


@bp.get("/<id:job_id>/events", responses={200: {"description": "a stream of Server-Sent Events",
                                                  "content": {"text/event-stream": {"schema": SSE_EVENT}}}})
def job_events(path: JobPath):
    """Server-Sent Events: progress and kind-specific events, then one of done, error or cancelled.

    Resume with the Last-Event-ID header (or `last_event_id` query parameter). A user may hold
    MAX_STREAMS_PER_USER streams open at once (an anonymous link: per client IP); 429
    `too_many_streams` beyond, before the stream starts.
    """
    user = authenticate(job_service.resource(path.job_id))
    job = job_service.get_owned(path.job_id, user)
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or ""
    if last_id and not _EVENT_ID.match(last_id):
        raise APIError(400, "invalid_last_event_id", "Last-Event-ID must look like 1700000000000-0")
    final = final_event(job)
    job_id = job.id
    slot = StreamSlot.open(f"user:{user.id}" if user else f"ip:{request.remote_addr}")
    db.session.remove()  # hold no database connection while streaming

    app = current_app._get_current_object()

    def recheck():
        with app.app_context():
            found = db.session.get(Job, job_id)
            return final_event(found) if found else ("error", {"state": "failed", "error": {"code": "gone"}})

    def generate():
        try:
            yield from sse.stream(job_id, last_id, final, recheck, slot.touch)
        except redis.exceptions.RedisError:
            return  # the client reconnects with Last-Event-ID

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
    resp = Response(generate(), mimetype="text/event-stream", headers=headers)
    resp.call_on_close(slot.close)  # also when the body was never read
    return resp
