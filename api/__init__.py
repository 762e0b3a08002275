"""The Flask API: `create_app(test_config=None)` builds it.

Request path: blueprint (api/blueprints) -> service (api/services) -> shared models and the
job contract (shared/) -> Celery through Redis -> worker task (worker/tasks).
"""
from __future__ import annotations

from flask import redirect
from flask.sessions import SessionInterface
from flask_openapi3 import Info, OpenAPI
from pydantic import BaseModel
from werkzeug.middleware.proxy_fix import ProxyFix

from api import commands
from api.blueprints import admin, auth, chat, files, health, jobs, knowledge, speech, user
from api.errors import register_error_handlers, validation_error_response
from api.extensions import cors, headers, json_provider, limiter, request_id
from api.extensions import jwt as jwt_ext
from api.schemas.common import ErrorResponse, IdConverter
from shared.database import init_db
from shared.logs import configure_logging
from shared.settings import get_settings

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "signed_url": {"type": "apiKey", "in": "query", "name": "sig",
                   "description": "the short-lived signature carried by status_url, events_url and download URLs"},
}


class MentorAPI(OpenAPI):
    """Views may return pydantic models (alone or with a status); they are sent as JSON."""

    def make_response(self, rv):
        """Build the response, a pydantic model (alone or first in a tuple with status and headers) dumped first."""
        if isinstance(rv, tuple) and rv and isinstance(rv[0], BaseModel):
            rv = (rv[0].model_dump(), *rv[1:])
        elif isinstance(rv, BaseModel):
            rv = rv.model_dump()
        return super().make_response(rv)


class NoSessions(SessionInterface):
    """The API keeps no cookie session (callers send Bearer tokens): none is opened or saved."""

    def open_session(self, app, request):
        """Every request gets the null session."""
        return self.make_null_session(app)

    def save_session(self, app, session, response):
        """Nothing to save."""
        return None


def create_app(test_config: dict | None = None) -> OpenAPI:
    """Build the app: database, extensions, error handlers, every blueprint, the CLI; test_config overrides config."""
    settings = get_settings()
    configure_logging("api")
    app = MentorAPI(
        __name__,
        info=Info(title="Digital-human mentor API", version="1.0.0"),
        security_schemes=SECURITY_SCHEMES,
        doc_prefix="/api",
        doc_url="/openapi.json",
        validation_error_status=400,
        validation_error_model=ErrorResponse,
        validation_error_callback=validation_error_response,
    )
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY,
        MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH,  # upload routes raise their own limit
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    app.session_interface = NoSessions()

    init_db(app, app.config.get("DATABASE_URL") or settings.DATABASE_URL)
    json_provider.init_app(app)
    request_id.init_app(app)
    headers.init_app(app)
    cors.init_app(app)
    jwt_ext.init_app(app)
    limiter.init_app(app)
    register_error_handlers(app)

    app.url_map.converters["id"] = IdConverter  # before the routes that use it
    for module in (auth, user, admin, jobs, chat, files, knowledge, speech, health):
        app.register_api(module.bp)

    @app.get("/api/docs", doc_ui=False)
    def docs():
        return redirect("/api/swagger", code=302)

    @app.teardown_appcontext
    def _end_session(_exc):
        from shared.database import db
        db.session.remove()

    commands.init_app(app)
    if settings.TRUSTED_PROXIES:  # the client's address from X-Forwarded-For, set by that many proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.TRUSTED_PROXIES)
    return app
