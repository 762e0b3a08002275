"""The LLM provider interface and its two errors."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypedDict


class ChatMessage(TypedDict):
    """One chat message as providers take it: a role (system, user, assistant) and its text."""
    role: str  # system | user | assistant
    content: str


class LLMUnavailable(Exception):
    """The provider could not be reached or answered 5xx before the first token: worth a retry."""


class LLMError(Exception):
    """The provider refused the request or sent something we cannot read: not worth a retry."""


class LLMProvider(Protocol):
    """What an LLM provider offers: a name and a stream of text deltas for a list of chat messages."""
    name: str

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float,
               user_id: str, session_id: str) -> Iterator[str]:
        """Yield text deltas as the model produces them."""
        ...
