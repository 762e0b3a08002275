"""/api/knowledge: search the caller's files and the public ones (SEARCH_RATE_LIMIT per user)."""
from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from api.errors import APIError
from api.extensions.limiter import per_user
from api.schemas.common import ERRORS
from api.schemas.files import SearchBody, SearchResponse
from api.security import authenticate
from shared.retrieval import get_retriever
from shared.retrieval.http import RetrievalUnavailable
from shared.settings import get_settings

bp = APIBlueprint("knowledge", __name__, url_prefix="/api/knowledge", abp_tags=[Tag(name="knowledge")],
                  abp_security=[{"bearer": []}], abp_responses=ERRORS)


@bp.post("/search", responses={200: SearchResponse})
def search(body: SearchBody):
    """Hybrid search (full text and vectors) over the caller's personal files and the public ones."""
    user = authenticate()
    per_user(get_settings().SEARCH_RATE_LIMIT, "search", user.id)
    try:
        hits = get_retriever().search(user.id, body.query, body.k, body.scope)
    except RetrievalUnavailable as exc:
        raise APIError(503, "retrieval_unavailable", str(exc), None, {"Retry-After": "5"}) from exc
    return {"hits": [h.as_dict() for h in hits]}
