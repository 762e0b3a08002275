"""The one error shape, `{"error": {"code", "message", "details"}}`, for every 4xx and 5xx.

`APIError` is what services raise; the handlers here turn it, Werkzeug's HTTP errors,
pydantic validation errors, malformed JSON, Redis outages and anything unexpected into
that shape. Never an HTML page, never a stack trace.
"""
from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from api.extensions.limiter import RateLimited
from shared.jobs import JobLimitExceeded

log = logging.getLogger(__name__)

JSON_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class APIError(Exception):
    """What a service raises: answered with `status`, the error shape (code, message, details) and `headers`."""
    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, details: Any = None, headers=None):
    """Return a JSON response in the error shape, with the given status and headers."""
    resp = jsonify({"error": {"code": code, "message": message, "details": details}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _clean_errors(exc: ValidationError) -> list[dict]:
    out = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        out.append({"field": ".".join(str(p) for p in err["loc"]) or None,
                    "message": err["msg"], "type": err["type"]})
    return out


def validation_error_response(exc: ValidationError):
    """flask-openapi3's validation_error_callback: 400 naming each bad or unknown field."""
    errors = _clean_errors(exc)
    unknown = [e["field"] for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        message = "unknown field(s): " + ", ".join(sorted((f or "").split(".")[-1] or '""' for f in unknown))
    else:
        message = "invalid request: " + "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors[:5])
    return error_response(400, "validation_error", message, errors)


def check_json_body():
    """before_request: a body on a JSON route must be well-formed JSON with the right type."""
    if request.method not in JSON_METHODS or not (request.content_length or request.headers.get("Transfer-Encoding")):
        return None
    if request.mimetype == "multipart/form-data":
        return None
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        return error_response(415, "unsupported_media_type",
                              "send the body as application/json", {"content_type": request.mimetype or None})
    try:
        parsed = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes: not a ValueError, so not silenced
        return error_response(400, "malformed_json", "the request body is nested too deeply")
    if parsed is None and request.get_data(cache=True).strip():
        return error_response(400, "malformed_json", "the request body is not valid JSON")
    return None


def register_error_handlers(app: Flask) -> None:
    """Install the JSON-body check and the handlers answering every error in the error shape (Redis, DB down: 503)."""
    app.before_request(check_json_body)

    @app.errorhandler(APIError)
    def _api_error(exc: APIError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(JobLimitExceeded)
    def _job_limit(exc: JobLimitExceeded):
        return error_response(429, "too_many_jobs", str(exc), {"kind": exc.kind, "limit": exc.limit},
                              {"Retry-After": "5"})

    @app.errorhandler(RateLimited)
    def _rate_limited(exc: RateLimited):
        return error_response(429, "rate_limited", str(exc), {"limit": exc.limit, "retry_after": exc.retry_after},
                              {"Retry-After": str(exc.retry_after)})

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        return validation_error_response(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if exc.response is not None and exc.response.mimetype == "application/json":
            return exc.response  # already in our shape (validation aborts)
        code = (exc.name or "error").lower().replace(" ", "_").replace("'", "")
        headers = {}
        if exc.code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        message = exc.description or exc.name
        if exc.code == 413:
            message = "the request body is too large"
        return error_response(exc.code or 500, code, message, None, headers)

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    def _redis_down(exc):
        log.error("redis unavailable: %s", exc)
        return error_response(503, "service_unavailable", "a backing service (Redis) is unavailable; retry shortly",
                              None, {"Retry-After": "5"})

    @app.errorhandler(OperationalError)
    def _db_down(exc):
        log.error("database error: %s", exc)
        return error_response(503, "service_unavailable", "the database is unavailable; retry shortly",
                              None, {"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "an unexpected error occurred")
