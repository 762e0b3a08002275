"""What an upload really is, from its bytes: the name and the client's header are not trusted.

A file whose extension lies is kept as its real type when that type is allowed; text has no
magic number, so only for text does the extension choose between txt and md.

Everything here is bounded, since it runs on the API's event loop: at most the first 64 KB
are looked at, and for a ZIP the end records (zip64 too) decide from the declared entry
count and directory size, before any entry is parsed, whether its central directory is
small enough to read (DOCX_MAX_ENTRIES, DOCX_MAX_DIRECTORY_BYTES); `word/document.xml` is
then found by a scan of the directory's bytes, with no object made per entry.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import BinaryIO

import filetype

from api.errors import APIError
from shared.settings import get_settings

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
HEAD_BYTES = 64 * 1024

# ZIP records (APPNOTE.TXT 4.3): the end of central directory (EOCD), the zip64 EOCD locator
# and record, and a central directory header, whose name length is at offset 28.
_EOCD = struct.Struct("<4s4H2LH")
_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_HEADER = 46
_MAX_COMMENT = 0xFFFF
DOCX_BODY = b"word/document.xml"


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
    if start.startswith(("<!doctype html", "<html")) or "<html" in start[:200]:
        return "html"
    return "md" if Path(name).suffix.lower() in {".md", ".markdown"} else "txt"


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def _directory(f: BinaryIO, size: int) -> tuple[int, int, int] | None:
    """(entries, directory size, directory offset) from the end records, or None when there are none.

    The directory is where zipfile reads it: right before the (zip64) end record.
    """
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    tail = _read_at(f, tail_start, size - tail_start)
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0:  # the record whose comment runs to the end of the file
        if at + _EOCD.size <= len(tail) and at + _EOCD.size + _EOCD.unpack_from(tail, at)[-1] == len(tail):
            break
        at = tail.rfind(b"PK\x05\x06", 0, at)
    if at < 0:
        return None
    _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack_from(tail, at)
    end = tail_start + at
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        if end < _LOCATOR.size:
            return None
        sig, _, record_at, _ = _LOCATOR.unpack(_read_at(f, end - _LOCATOR.size, _LOCATOR.size))
        if sig != b"PK\x06\x07" or record_at + _EOCD64.size > end - _LOCATOR.size:
            return None
        record = _read_at(f, record_at, _EOCD64.size)
        if not record.startswith(b"PK\x06\x06"):
            return None
        _, _, _, _, _, _, _, entries, cd_size, _ = _EOCD64.unpack(record)
        end = record_at
    if cd_size > end:
        return None
    return entries, cd_size, end - cd_size


def _has_entry(directory: bytes, name: bytes) -> bool:
    """Whether a central directory header in `directory` names exactly `name`."""
    at = directory.find(name)
    while at >= 0:
        head = at - _CENTRAL_HEADER
        if (head >= 0 and directory.startswith(b"PK\x01\x02", head)
                and struct.unpack_from("<H", directory, head + 28)[0] == len(name)):
            return True
        at = directory.find(name, at + 1)
    return False


def _zip_kind(f: BinaryIO, size: int) -> str | None:
    """"docx", "zip", or None (not a readable ZIP); 415 `unsafe_file` past the directory limits."""
    found = _directory(f, size)
    if found is None:
        return None
    entries, cd_size, cd_offset = found
    s = get_settings()
    if entries > s.DOCX_MAX_ENTRIES or cd_size > s.DOCX_MAX_DIRECTORY_BYTES:
        raise APIError(415, "unsafe_file",
                       f"the archive declares {entries} entries in a directory of {cd_size} bytes; "
                       f"the limits are {s.DOCX_MAX_ENTRIES} entries and {s.DOCX_MAX_DIRECTORY_BYTES} bytes",
                       {"entries": entries, "directory_bytes": cd_size, "max_entries": s.DOCX_MAX_ENTRIES,
                        "max_directory_bytes": s.DOCX_MAX_DIRECTORY_BYTES})
    directory = _read_at(f, cd_offset, cd_size)
    if len(directory) != cd_size or not directory.startswith(b"PK\x01\x02"):
        return None
    return "docx" if _has_entry(directory, DOCX_BODY) else "zip"


def sniff(f: BinaryIO, name: str) -> str | None:
    """The kind of the seekable file `f` (a key of CONTENT_TYPES, "zip", or another extension), or None.

    Raises a 415 APIError `unsafe_file` for an archive whose directory is beyond the limits.
    """
    head = _read_at(f, 0, HEAD_BYTES)
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(f, f.seek(0, io.SEEK_END))
    guess = filetype.guess(head)
    if guess is not None:
        return {"jpeg": "jpg"}.get(guess.extension, guess.extension)
    return _text_kind(head, name)


def display_name(raw: str | None) -> str:
    """A name to show: the last path part, printable, at most 200 characters. Never used as a path."""
    base = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".")
    return base[:200] or "upload"
