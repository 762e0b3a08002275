"""X-Request-ID on every response: the client's when it sends a sane one, else a new one."""
from __future__ import annotations

import re
import uuid

from flask import Flask, g, request

from shared.logs import request_id_var

_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def init_app(app: Flask) -> None:
    """Give each request an id (a safe client X-Request-ID, else a new uuid) for the logs, echoed on the response."""
    @app.before_request
    def _assign():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _SAFE.match(incoming) else uuid.uuid4().hex
        request_id_var.set(g.request_id)

    @app.after_request
    def _echo(response):
        response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
        return response
