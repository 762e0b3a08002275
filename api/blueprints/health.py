"""/api/health: liveness, and readiness of the database, Redis and a worker on each queue."""
from __future__ import annotations

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel
from sqlalchemy import text

from api.schemas.common import ErrorResponse
from shared import workers
from shared.celery_config import QUEUES
from shared.database import db
from shared.redis_client import get_redis

bp = APIBlueprint("health", __name__, url_prefix="/api/health", abp_tags=[Tag(name="health")])


class Health(BaseModel):
    """Response of GET /api/health: status "ok"."""
    status: str


class Ready(BaseModel):
    """Response of GET /api/health/ready: status "ready" and each check (database, redis, queue:<name>) as "ok"."""
    status: str
    checks: dict[str, str]


@bp.get("", responses={200: Health})
def health():
    """Liveness: the process answers."""
    return {"status": "ok"}


@bp.get("/ready", responses={200: Ready, 503: ErrorResponse})
def ready():
    """Readiness: database, Redis, and a live worker consuming each queue; 503 naming what is down."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        r = get_redis()
        r.ping()
        checks["redis"] = "ok"
        alive = workers.alive_queues(r)
        for q in QUEUES:
            checks[f"queue:{q}"] = "ok" if q in alive else "down: no live worker"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"down: {type(exc).__name__}"
        for q in QUEUES:
            checks[f"queue:{q}"] = "unknown: redis is down"
    down = sorted(k for k, v in checks.items() if v != "ok")
    if down:
        body = {"error": {"code": "not_ready", "message": "not ready: " + ", ".join(down), "details": checks}}
        return jsonify(body), 503
    return {"status": "ready", "checks": checks}
