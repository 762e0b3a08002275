"""The retrieval interface: a search for a user returns ranked hits."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Protocol

ScopeFilter = Literal["all", "personal", "public"]


@dataclass
class Hit:
    file_id: str
    file_name: str
    page: int | None
    text: str
    score: float

    def as_dict(self) -> dict:
        return asdict(self)


class Retriever(Protocol):
    def search(self, user_id: str, query: str, k: int, scope: ScopeFilter = "all") -> list[Hit]: ...
