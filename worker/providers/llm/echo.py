"""A provider that streams fixed tokens at a steady rate: for benchmarks and pipeline tests, never the default."""
from __future__ import annotations

import time
from collections.abc import Iterator

from shared.settings import get_settings
from worker.providers.llm.base import ChatMessage


class Echo:
    """A fake provider that streams LLM_ECHO_TOKENS fixed tokens at LLM_ECHO_RATE a second."""
    name = "echo"

    def __init__(self) -> None:
        s = get_settings()
        self.rate = s.LLM_ECHO_RATE
        self.count = s.LLM_ECHO_TOKENS

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float,
               user_id: str, session_id: str) -> Iterator[str]:
        """Yield `tok0 `, `tok1 `, ... on a steady schedule, at most max_tokens of them; the messages are ignored."""
        interval = 1.0 / self.rate
        start = time.monotonic()
        for i in range(min(self.count, max_tokens)):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield f"tok{i} "
