"""Retrieval: the query side, shared so that the API answers searches itself and chat uses them.

`get_retriever()` returns the provider RETRIEVAL_PROVIDER names: `builtin` (hybrid search
in our own database) or `http` (the original mentor system's RAG service).
"""
from __future__ import annotations

from shared.retrieval.base import Hit, Retriever
from shared.settings import get_settings

__all__ = ["Hit", "Retriever", "get_retriever"]


def get_retriever() -> Retriever:
    """The retriever RETRIEVAL_PROVIDER names: `http` (the RAG service) or `builtin` (the default)."""
    if get_settings().RETRIEVAL_PROVIDER == "http":
        from shared.retrieval.http import HttpRetriever
        return HttpRetriever()
    from shared.retrieval.builtin import BuiltinRetriever
    return BuiltinRetriever()
