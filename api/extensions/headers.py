"""Headers every response carries: `X-Content-Type-Options: nosniff` (no browser guesses a type)."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the after_request hook that stamps the headers."""
    @app.after_request
    def _nosniff(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
