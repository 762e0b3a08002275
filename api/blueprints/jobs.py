"""/api/jobs: a job's record, its live events (SSE), listing and cancellation."""
from __future__ import annotations

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag

from api.schemas.common import ERRORS, ErrorResponse, JobOut
from api.schemas.jobs import SSE_EVENT, JobListQuery, JobPage, JobPath
from api.security import authenticate
from api.services import jobs as job_service
from shared.signing import job_resource

bp = APIBlueprint("jobs", __name__, url_prefix="/api/jobs", abp_tags=[Tag(name="jobs")],
                  abp_security=[{"bearer": []}, {"signed_url": []}], abp_responses=ERRORS)


@bp.get("", responses={200: JobPage})
def list_jobs(query: JobListQuery):
    """The caller's jobs, newest first."""
    return job_service.list_owned(authenticate(), query.limit, query.offset, query.kind, query.state)


@bp.get("/<id:job_id>", responses={200: JobOut})
def get_job(path: JobPath):
    """The job record: state, progress, result or error. Bearer header or the signed status_url."""
    user = authenticate(job_resource(path.job_id))
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
    user = authenticate(job_resource(path.job_id))
    job = job_service.get_owned(path.job_id, user)
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or ""
    frames, close = job_service.event_stream(job, user, last_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
    resp = Response(frames, mimetype="text/event-stream", headers=headers)
    resp.call_on_close(close)  # also when the body was never read
    return resp
