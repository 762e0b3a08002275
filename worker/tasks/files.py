"""The files queue: extract an upload's text, chunk it, embed it, index it.

Status goes processing -> ready (or failed with the reason); images and audio end as
`stored`. A re-run replaces the file's chunks, so running twice indexes once. Extraction
checks for cancellation and the time limit before each page, and is interrupted within one
(a few times a second): a cancelled file is `failed` with code `cancelled`, a timed-out one
with `time_limit`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import delete, insert, update

from shared.database import db, write_tx
from shared.models import Chunk, File, FileScope, FileStatus
from shared.retrieval import embeddings
from shared.retrieval import http as retrieval_http
from shared.retrieval.builtin import index_changed
from shared.settings import get_settings
from shared.storage import get_storage
from worker.ingest.chunking import chunk_pages
from worker.ingest.extract import ExtractionError, extract
from worker.tasks.base import job_task
from worker.tasks.context import JobContext, JobFailed, Transient

INDEXED = {"pdf", "docx", "txt", "md", "html"}
BATCH = 256


def _set_file(file_id: str, **values) -> None:
    with write_tx():
        db.session.execute(update(File).where(File.id == file_id).values(**values))


def _file_failed(ctx: JobContext, error: dict) -> None:
    db.session.execute(update(File).where(File.id == ctx.payload.file_id).values(
        status=FileStatus.failed.value, error=error))


@job_task("files.process", max_retries=3, on_fail=_file_failed)
def process_file(ctx: JobContext) -> dict:
    """Index one uploaded file (a failed or cancelled job leaves it `failed` with the job's error)."""
    s = get_settings()
    f = db.session.get(File, ctx.payload.file_id)
    if f is None:
        raise JobFailed("file_gone", "the file was deleted")
    kind = ctx.payload.kind
    file_id, key, owner, scope, name = f.id, f.storage_key, f.user_id, f.scope, f.name
    db.session.commit()
    if kind not in INDEXED:
        _set_file(file_id, status=FileStatus.stored.value)
        return {"file_id": file_id, "status": FileStatus.stored.value, "indexed": False}
    _set_file(file_id, status=FileStatus.processing.value, error=None)

    with tempfile.TemporaryDirectory(prefix="ingest-") as folder:
        path = Path(folder) / "blob"
        with get_storage().open(key) as src, open(path, "wb") as out:
            out.write(src.read())
        if s.RETRIEVAL_PROVIDER == "http":
            return _forward(ctx, file_id, owner, name, path, scope)
        try:
            with ctx.interruptible():
                pages = extract(path, kind, check=ctx.check_cancelled, progress=lambda i, n: ctx.emit(
                    "progress", {"progress": round(0.5 * i / n, 3), "stage": "extracting", "page": i, "pages": n}))
        except ExtractionError as exc:
            raise JobFailed(exc.code, exc.message) from exc

    pieces = chunk_pages(pages, s.CHUNK_CHARS, s.CHUNK_OVERLAP)
    ctx.check_cancelled()
    with write_tx():  # a re-run starts from a clean slate
        db.session.execute(delete(Chunk).where(Chunk.file_id == file_id))
    index_changed(deleted=True)
    for start in range(0, len(pieces), BATCH):
        batch = pieces[start:start + BATCH]
        vectors = embeddings.encode([text for _, text in batch])
        rows = [{"file_id": file_id, "user_id": owner, "scope": scope, "page": page, "ordinal": start + i,
                 "text": text, "embedding": embeddings.to_bytes(vectors[i])} for i, (page, text) in enumerate(batch)]
        with write_tx():
            db.session.execute(insert(Chunk), rows)
        ctx.emit("progress", {"progress": round(0.5 + 0.5 * (start + len(batch)) / len(pieces), 3),
                              "stage": "indexing", "chunks": start + len(batch)})
        ctx.check_cancelled()
    page_count = max((p for p, _ in pages if p), default=None)
    _set_file(file_id, status=FileStatus.ready.value, chunk_count=len(pieces), page_count=page_count)
    index_changed()
    return {"file_id": file_id, "status": FileStatus.ready.value, "chunks": len(pieces), "pages": page_count}


def _forward(ctx: JobContext, file_id: str, owner: str, name: str, path: Path, scope: str) -> dict:
    """RETRIEVAL_PROVIDER=http: the RAG service indexes the file itself."""
    import requests
    try:
        retrieval_http.upload(owner, name, path.read_bytes(), public=scope == FileScope.public.value)
    except requests.RequestException as exc:
        raise Transient(f"the RAG service did not take the file: {type(exc).__name__}", code="rag_unavailable") from exc
    _set_file(file_id, status=FileStatus.ready.value)
    return {"file_id": file_id, "status": FileStatus.ready.value, "forwarded": True}
