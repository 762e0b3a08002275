"""JSON responses: datetimes as ISO 8601 UTC (`2026-01-01T12:00:00Z`), pydantic models as their dump."""
from __future__ import annotations

from datetime import date, datetime

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel


class APIJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, keys unsorted; datetimes as ISO 8601 UTC (milliseconds, Z), pydantic models dumped."""
    sort_keys = False

    @staticmethod
    def default(o):
        """Serialise a datetime, date or pydantic model; anything else as Flask's default does (or TypeError)."""
        if isinstance(o, datetime):
            return o.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
        if isinstance(o, date):
            return o.isoformat()
        if isinstance(o, BaseModel):
            return o.model_dump()
        return DefaultJSONProvider.default(o)


def init_app(app: Flask) -> None:
    """Make APIJSONProvider the app's JSON provider."""
    app.json_provider_class = APIJSONProvider
    app.json = APIJSONProvider(app)
