"""The original mentor system's LLM service.

POST {base}/chat/stream with JSON {input, session_id, user_id}; the answer is SSE lines
`data: {"chunk": "...", "status": "streaming"}` and a last `{"status": "finished"}`. It keeps
its own conversation memory per session_id, so only the newest user message is sent.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

from shared.settings import get_settings
from worker.providers.llm.base import ChatMessage, LLMError
from worker.providers.llm.sse_client import iter_data, post_stream


class TutorNet:
    """A streaming client of the TutorNet LLM service at LLM_BASE_URL (LLMError if unset)."""
    name = "tutornet"

    def __init__(self) -> None:
        s = get_settings()
        if not s.LLM_BASE_URL:
            raise LLMError("LLM_BASE_URL is not set (the TutorNet service root)")
        self.url = s.LLM_BASE_URL.rstrip("/") + "/chat/stream"
        self.headers = {"Authorization": f"Bearer {s.LLM_API_KEY}"} if s.LLM_API_KEY else {}
        self.timeout = (s.LLM_CONNECT_TIMEOUT, s.LLM_READ_TIMEOUT)

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float,
               user_id: str, session_id: str) -> Iterator[str]:
        """Send the newest user message (and any retrieved context), yield its chunks; LLMError unless it finishes."""
        prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        context = next((m["content"] for m in messages if m["role"] == "system" and "<context>" in m["content"]), "")
        body = {"input": f"{context}\n\n{prompt}" if context else prompt, "session_id": session_id,
                "user_id": user_id}
        resp = post_stream(self.url, json=body, headers=self.headers, timeout=self.timeout)
        finished = False
        for data in iter_data(resp):
            try:
                event = json.loads(data)
                status = event.get("status")
            except (ValueError, AttributeError) as exc:
                raise LLMError(f"unreadable event from TutorNet: {data[:120]!r}") from exc
            if status == "finished":
                finished = True
                break
            if status not in ("streaming", None) or not isinstance(event.get("chunk", ""), str):
                raise LLMError(f"unexpected event from TutorNet: {data[:120]!r}")
            if event.get("chunk"):
                yield event["chunk"]
        if not finished:
            raise LLMError("TutorNet ended the stream without finishing")
