"""Text out of files, page by page where the format has pages.

Raises `ExtractionError(code, message)` for what cannot be read: an encrypted PDF, a
corrupt file, an unsafe archive (zip bomb), a PDF page with more drawing instructions than
PDF_MAX_PAGE_CONTENT_BYTES (`too_complex`: a page's cost is bounded before it is parsed), or a
file with no text at all. A PDF is read page by page, calling `check()` before each page (the
caller can stop it within a page too: `JobContext.interruptible`).
"""
from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

from defusedxml import ElementTree

from shared.settings import get_settings

Page = tuple[int | None, str]  # (page number from 1, or None; text)
W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


class ExtractionError(Exception):
    """A file whose text cannot be read; `code` names why (encrypted_pdf, corrupt_file, no_text, ...)."""
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def extract(path: Path, kind: str, progress: Callable[[int, int], None] | None = None,
            check: Callable[[], None] = lambda: None) -> list[Page]:
    """The file's text as pages; `check` raises to stop (cancelled, out of time)."""
    readers = {"pdf": _pdf, "docx": _docx, "html": _html, "txt": _text, "md": _text}
    if kind not in readers:
        raise ExtractionError("not_indexable", f"{kind} files are stored, not indexed")
    pages = readers[kind](path, progress, check) if kind == "pdf" else readers[kind](path)
    if not any(text.strip() for _, text in pages):
        raise ExtractionError("no_text", "the file has no extractable text (a scanned document?)")
    return pages


def _pdf(path: Path, progress, check) -> list[Page]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:  # noqa: BLE001 - any failure to open means we cannot read it
                opened = 0
            if not opened:
                raise ExtractionError("encrypted_pdf", "the PDF is encrypted with a password")
        total = len(reader.pages)
        limit = get_settings().UPLOAD_MAX_PAGES
        if total > limit:
            raise ExtractionError("too_many_pages", f"the PDF has {total} pages; the limit is {limit}")
        pages = []
        max_bytes = get_settings().PDF_MAX_PAGE_CONTENT_BYTES
        for i, page in enumerate(reader.pages, start=1):
            check()
            size = _content_bytes(page)
            if size > max_bytes:
                raise ExtractionError("too_complex", f"page {i} has {size:,} bytes of drawing instructions; "
                                                     f"the limit is {max_bytes:,}")
            pages.append((i, page.extract_text() or ""))
            if progress:
                progress(i, total)
        return pages
    except ExtractionError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ExtractionError("corrupt_file", f"the PDF cannot be read: {type(exc).__name__}") from exc


def _content_bytes(page) -> int:
    """The decoded size of a page's content streams: what extracting its text parses first."""
    from pypdf.generic import ArrayObject
    contents = page.get("/Contents")
    if contents is None:
        return 0
    contents = contents.get_object()
    streams = list(contents) if isinstance(contents, ArrayObject) else [contents]
    return sum(len(s.get_object().get_data()) for s in streams)


def _docx(path: Path) -> list[Page]:
    limit = get_settings().DOCX_MAX_UNCOMPRESSED
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            worst = max((i.file_size / max(i.compress_size, 1) for i in infos), default=0)
            if total > limit or worst > 200:
                raise ExtractionError("unsafe_file", "the DOCX expands to far more than its size (a zip bomb?)")
            with z.open("word/document.xml") as f:
                xml = f.read(limit + 1)
    except ExtractionError:
        raise
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ExtractionError("corrupt_file", f"the DOCX cannot be read: {type(exc).__name__}") from exc
    try:
        root = ElementTree.fromstring(xml)
    except Exception as exc:  # noqa: BLE001 - defusedxml raises several kinds
        raise ExtractionError("corrupt_file", f"the DOCX body is not valid XML: {type(exc).__name__}") from exc
    paragraphs = ["".join(t.text or "" for t in p.iter(f"{W}t")) for p in root.iter(f"{W}p")]
    return [(None, "\n".join(p for p in paragraphs if p.strip()))]


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def _html(path: Path) -> list[Page]:
    parser = _HTMLText()
    parser.feed(path.read_bytes().decode("utf-8", errors="replace"))
    parser.close()
    text = re.sub(r"[ \t]+", " ", "".join(parser.parts))
    return [(None, re.sub(r"\n\s*\n+", "\n\n", text).strip())]


def _text(path: Path) -> list[Page]:
    return [(None, path.read_bytes().decode("utf-8", errors="replace"))]
