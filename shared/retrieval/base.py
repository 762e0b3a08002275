"""The retrieval interface: a search for a user returns ranked hits."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Protocol

ScopeFilter = Literal["all", "personal", "public"]


@dataclass
class Hit:
    """One search result: a chunk's text, the file and page it came from, and its score."""
    file_id: str
    file_name: str
    page: int | None
    text: str
    score: float

    def as_dict(self) -> dict:
        """The hit as a plain dict (for JSON)."""
        return asdict(self)


class Retriever(Protocol):
    """Anything that searches a user's visible material."""
    def search(self, user_id: str, query: str, k: int, scope: ScopeFilter = "all") -> list[Hit]:
        """The k best hits for `query` among the chunks `user_id` may see, in `scope`."""
        ...
