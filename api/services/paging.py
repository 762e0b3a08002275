"""One page of a listing: its items, the total and the window asked for."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, func, select

from shared.database import db


def page(stmt: Select, order_by: tuple, limit: int, offset: int, out: Callable[[Any], dict]) -> dict:
    """Run `stmt` for rows offset..offset+limit in `order_by`, each rendered by `out`, with the total."""
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.session.execute(stmt.order_by(*order_by).limit(limit).offset(offset)).scalars()
    return {"items": [out(row) for row in rows], "total": total, "limit": limit, "offset": offset}
