"""A minimal Flask app for the worker: it only binds the shared database to tasks."""
from __future__ import annotations

from flask import Flask

from shared.database import init_db
from shared.settings import get_settings

_app: Flask | None = None


def flask_app() -> Flask:
    global _app
    if _app is None:
        _app = Flask("worker")
        init_db(_app, get_settings().DATABASE_URL)
    return _app
