"""gunicorn configuration for the API: gevent workers whose own error pages are JSON.

gunicorn answers some requests itself, before the app sees them (a request line over
`limit_request_line`, too many or too large headers, a malformed request line or method):
with an HTML page by default. These workers answer them in the API's one error shape,
`{"error": {"code", "message", "details"}}` (api/errors.py), the code derived from the
reason as the API derives it from an HTTP error's name, and a fixed message per status:
gunicorn's own text (its limits, the client's request line) is never echoed.

Use it as gunicorn's config file, not as a module (an import of `api.` here would load the
app in the master before gevent patches the workers):
    gunicorn --config api/gunicorn_worker.py --workers 2 ... "api:create_app()"
"""
from __future__ import annotations

import json

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

MESSAGES = {
    400: "the request is malformed",
    414: "the request line is too long",
    431: "the request has too many headers, or one too large",
    500: "the server could not handle the request",
}


def write_json_error(sock, status_int: int, reason: str, _mesg: str) -> None:
    """What gunicorn.util.write_error writes, as JSON in the API's error shape (gunicorn's text left out)."""
    code = reason.lower().replace(" ", "_").replace("'", "")
    message = MESSAGES.get(status_int, reason.lower())
    body = json.dumps({"error": {"code": code, "message": message, "details": None}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


class JSONErrorGeventWorker(GeventWorker):
    """gunicorn's gevent worker; its own 4xx and 5xx answers use the API's JSON error shape."""

    def init_process(self):
        """Make gunicorn.util.write_error the JSON writer in this worker process, then start as gevent does."""
        # Worker.handle_error writes through gunicorn.util.write_error: in this (forked) worker
        # process, that is the JSON writer. The master writes no HTTP answers.
        util.write_error = write_json_error
        super().init_process()


worker_class = JSONErrorGeventWorker
