"""What an upload really is, from its bytes: the name and the client's header are not trusted.

A file whose extension lies is kept as its real type when that type is allowed; text has no
magic number, so only for text does the extension choose between txt and md.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import filetype

CONTENT_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "txt": "text/plain; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "png": "image/png",
    "jpg": "image/jpeg",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
}
INDEXED = {"pdf", "docx", "txt", "md", "html"}


def _text_kind(head: bytes, name: str) -> str | None:
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return None
        text = head[:exc.start].decode("utf-8")
    start = text.lstrip("\ufeff \t\r\n")[:1024].lower()
    if start.startswith("<!doctype html") or start.startswith("<html") or "<html" in start[:200]:
        return "html"
    return "md" if Path(name).suffix.lower() in {".md", ".markdown"} else "txt"


def sniff(path: Path, name: str) -> str | None:
    """The kind of the file at `path` (a key of CONTENT_TYPES, "zip", or another extension), or None."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
        except zipfile.BadZipFile:
            return None
        return "docx" if "word/document.xml" in names else "zip"
    guess = filetype.guess(head)
    if guess is not None:
        return {"jpeg": "jpg"}.get(guess.extension, guess.extension)
    return _text_kind(head, name)


def display_name(raw: str | None) -> str:
    """A name to show: the last path part, printable, at most 200 characters. Never used as a path."""
    base = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".")
    return base[:200] or "upload"
