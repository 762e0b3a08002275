"""CORS for the origins in CORS_ORIGINS only, on /api/* routes."""
from __future__ import annotations

from flask import Flask
from flask_cors import CORS

from shared.settings import get_settings


def init_app(app: Flask) -> None:
    """Allow CORS on /api/* from CORS_ORIGINS only, with the request and response headers the API uses."""
    CORS(app, resources={r"/api/*": {"origins": get_settings().cors_origins}},
         allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "X-Request-ID"],
         expose_headers=["X-Request-ID", "Retry-After", "Location"], max_age=600,
         always_send=False)  # CORS headers only for a request that names its Origin
