"""The original mentor system's RAG service as the retrieval provider.

Query: POST {base}/retriever {question, user_id, personal_k, public_k, final_k} ->
{hits: [{text, source, page_num, final_score, knowledge_base}]}. Ingestion (worker side):
uploads to /user/upload or /admin/upload and deletes to /user/delete or /admin/delete, with
form fields user_id and file.
"""
from __future__ import annotations

import requests

from shared.retrieval.base import Hit, ScopeFilter
from shared.settings import get_settings


class RetrievalUnavailable(Exception):
    """The RAG service is not configured, unreachable, or answered with an error."""


def _base() -> str:
    base = get_settings().RETRIEVAL_BASE_URL.rstrip("/")
    if not base:
        raise RetrievalUnavailable("RETRIEVAL_BASE_URL is not set")
    return base


class HttpRetriever:
    """Search through the RAG service's POST /retriever."""
    def search(self, user_id: str, query: str, k: int, scope: ScopeFilter = "all") -> list[Hit]:
        """The k best hits the RAG service returns for the query."""
        body = {"question": query, "user_id": user_id, "personal_k": 0 if scope == "public" else k,
                "public_k": 0 if scope == "personal" else k, "final_k": k}
        try:
            resp = requests.post(f"{_base()}/retriever", json=body, timeout=get_settings().RETRIEVAL_TIMEOUT)
            resp.raise_for_status()
            hits = resp.json().get("hits") or []
        except (requests.RequestException, ValueError) as exc:
            raise RetrievalUnavailable(f"the RAG service failed: {type(exc).__name__}") from exc
        return [Hit(file_id=str(h.get("source", "")), file_name=str(h.get("source", "")), page=h.get("page_num"),
                    text=str(h.get("text", "")), score=float(h.get("final_score") or 0.0)) for h in hits[:k]]


def upload(user_id: str, name: str, content: bytes, public: bool) -> None:
    """Hand a file to the RAG service to index (as a public file when `public`)."""
    path = "/admin/upload" if public else "/user/upload"
    resp = requests.post(f"{_base()}{path}", data={"user_id": user_id}, files={"file": (name, content)},
                         timeout=get_settings().RETRIEVAL_TIMEOUT * 6)
    resp.raise_for_status()


def delete(user_id: str, name: str, public: bool) -> None:
    """Ask the RAG service to forget a file it indexed."""
    path = "/admin/delete" if public else "/user/delete"
    resp = requests.post(f"{_base()}{path}", data={"user_id": user_id, "file": name},
                         timeout=get_settings().RETRIEVAL_TIMEOUT)
    resp.raise_for_status()
