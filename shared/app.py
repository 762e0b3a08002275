"""The minimal Flask app of the worker processes (`create_app`): it binds the shared database.

Tasks run inside its app context through `worker.celery_app.AppTask`, as in Flask's Celery
pattern; the worker never imports the API's app.
"""
from __future__ import annotations

from flask import Flask

from shared.database import init_db
from shared.settings import get_settings

_app: Flask | None = None


def create_app() -> Flask:
    """This process's worker app, made once."""
    global _app
    if _app is None:
        _app = Flask("worker")
        init_db(_app, get_settings().DATABASE_URL)
    return _app
