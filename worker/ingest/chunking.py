"""Overlapping chunks of about CHUNK_CHARS characters, cut at sentence or word boundaries."""
from __future__ import annotations

import re

from worker.ingest.extract import Page

_SPACE = re.compile(r"\s+")


def chunk_pages(pages: list[Page], size: int, overlap: int) -> list[tuple[int | None, str]]:
    """Return (page, text) chunks of about `size` characters overlapping by `overlap`, cut at sentences or words."""
    out: list[tuple[int | None, str]] = []
    for page, text in pages:
        text = _SPACE.sub(" ", text).strip()
        start = 0
        while start < len(text):
            end = min(len(text), start + size)
            if end < len(text):
                window = text[start:end]
                cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "))
                if cut < size // 2:
                    cut = window.rfind(" ")
                if cut > size // 4:
                    end = start + cut + 1
            piece = text[start:end].strip()
            if piece:
                out.append((page, piece))
            if end >= len(text):
                break
            start = max(end - overlap, start + 1)
            space = text.find(" ", start)  # begin the next chunk on a word
            if 0 <= space < end:
                start = space + 1
    return out
