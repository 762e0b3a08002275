"""LLM providers: `get_provider()` returns the one LLM_PROVIDER names.

Every provider streams text deltas for a list of chat messages ({role, content}).
"""
from __future__ import annotations

from shared.settings import get_settings
from worker.providers.llm.base import LLMError, LLMProvider, LLMUnavailable

__all__ = ["LLMError", "LLMProvider", "LLMUnavailable", "get_provider"]

_cache: dict[str, LLMProvider] = {}


def get_provider() -> LLMProvider:
    """Return this process's provider for LLM_PROVIDER (made once; echo for a name it does not know)."""
    name = get_settings().LLM_PROVIDER
    if name not in _cache:
        if name == "local":
            from worker.providers.llm.local import LocalLlama as cls
        elif name == "openai":
            from worker.providers.llm.openai import OpenAICompatible as cls
        elif name == "tutornet":
            from worker.providers.llm.tutornet import TutorNet as cls
        else:
            from worker.providers.llm.echo import Echo as cls
        _cache[name] = cls()
    return _cache[name]
