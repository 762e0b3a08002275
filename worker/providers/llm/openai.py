"""Any OpenAI-compatible /v1/chat/completions server, streaming (OpenAI, vLLM, Ollama, llama.cpp)."""
from __future__ import annotations

import json
from collections.abc import Iterator

from shared.settings import get_settings
from worker.providers.llm.base import ChatMessage, LLMError
from worker.providers.llm.sse_client import iter_data, post_stream


class OpenAICompatible:
    """A streaming client of an OpenAI-compatible chat completions API at LLM_BASE_URL (LLMError if unset)."""
    name = "openai"

    def __init__(self) -> None:
        s = get_settings()
        if not s.LLM_BASE_URL:
            raise LLMError("LLM_BASE_URL is not set (e.g. https://api.openai.com/v1)")
        self.url = s.LLM_BASE_URL.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {s.LLM_API_KEY}"} if s.LLM_API_KEY else {}
        self.model = s.LLM_MODEL
        self.timeout = (s.LLM_CONNECT_TIMEOUT, s.LLM_READ_TIMEOUT)

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float,
               user_id: str, session_id: str) -> Iterator[str]:
        """Yield the reply's content deltas until [DONE]; LLMError on an unreadable chunk or a reported error."""
        body = {"model": self.model, "messages": messages, "stream": True, "max_tokens": max_tokens,
                "temperature": temperature, "user": user_id}
        resp = post_stream(self.url, json=body, headers=self.headers, timeout=self.timeout)
        for data in iter_data(resp):
            if data.strip() == "[DONE]":
                return
            try:
                chunk = json.loads(data)
                choices = chunk.get("choices") or []
                delta = (choices[0].get("delta") or {}).get("content") if choices else None
            except (ValueError, AttributeError, IndexError, TypeError) as exc:
                raise LLMError(f"unreadable chunk from the LLM service: {data[:120]!r}") from exc
            if "error" in chunk:
                raise LLMError(f"the LLM service reported an error: {str(chunk['error'])[:200]}")
            if delta:
                yield delta
