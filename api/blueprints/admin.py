"""/api/admin: user management for admins."""
from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from api.schemas.common import ERRORS
from api.schemas.user import AdminUserPatch, AdminUserQuery, UserOut, UserPage, UserPath
from api.security import authenticate, roles_required
from api.services import admin

bp = APIBlueprint("admin", __name__, url_prefix="/api/admin", abp_tags=[Tag(name="admin")],
                  abp_security=[{"bearer": []}], abp_responses=ERRORS)


@bp.get("/users", responses={200: UserPage})
@roles_required("admin")
def list_users(query: AdminUserQuery):
    """Users, newest first, filtered by role, status or a search string."""
    items, total = admin.list_users(query.limit, query.offset, query.role, query.status, query.q)
    return {"items": [UserOut.model_validate(u, from_attributes=True) for u in items],
            "total": total, "limit": query.limit, "offset": query.offset}


@bp.patch("/users/<id:user_id>", responses={200: UserOut})
@roles_required("admin")
def patch_user(path: UserPath, body: AdminUserPatch):
    """Change a user's role or status; disabling ends the user's tokens at once."""
    user = admin.update_user(authenticate(), path.user_id, body.model_dump(exclude_unset=True))
    return UserOut.model_validate(user, from_attributes=True)
