"""Uploads: sniff, hash, store, record, and queue the processing job; listing, download, delete."""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from flask import g
from sqlalchemy import delete, func, or_, select
from werkzeug.datastructures import FileStorage

from api.errors import APIError
from api.security import url_binding
from api.services.jobs import caller_session, cancel
from api.services.sniff import CONTENT_TYPES, INDEXED, display_name, sniff
from shared.database import db, write_tx
from shared.jobs import dispatch, new_job
from shared.knowledge.builtin import index_changed
from shared.models import Chunk, File, FileScope, FileStatus, Job, Role, User
from shared.models.job import ACTIVE_STATES
from shared.settings import get_settings
from shared.signing import job_urls
from shared.storage import get_storage


def file_out(f: File) -> dict:
    return {"id": f.id, "name": f.name, "size": f.size, "content_type": f.content_type, "sha256": f.sha256,
            "scope": f.scope, "status": f.status, "error": f.error, "page_count": f.page_count,
            "chunk_count": f.chunk_count, "job_id": f.job_id, "created_at": f.created_at, "owner_id": f.user_id}


def _visible(user: User):
    return or_(File.user_id == user.id, File.scope == FileScope.public.value)


def get_visible(user: User, file_id: str) -> File:
    f = db.session.get(File, file_id) if len(file_id) <= 64 else None
    if f is None or not (f.user_id == user.id or f.scope == FileScope.public.value):
        raise APIError(404, "not_found", "no such file")
    return f


def _spool(upload: FileStorage, folder: str) -> tuple[Path, str, int]:
    """Copy the upload to a temporary file, hashing it on the way."""
    path = Path(folder) / "upload"
    digest = hashlib.sha256()
    size = 0
    with open(path, "wb") as out:
        while chunk := upload.stream.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return path, digest.hexdigest(), size


def upload(user: User, upload: FileStorage | None, scope: str) -> tuple[dict, int]:
    s = get_settings()
    if upload is None:
        raise APIError(400, "missing_file", "send the file as multipart/form-data in the field `file`")
    if scope == FileScope.public.value and user.role not in (Role.tutor.value, Role.admin.value):
        raise APIError(403, "forbidden", "only tutors and admins can upload public files")
    name = display_name(upload.filename)
    with tempfile.TemporaryDirectory(prefix="upload-") as folder:
        path, sha, size = _spool(upload, folder)
        if size == 0:
            raise APIError(400, "empty_file", "the file is empty")
        if size > s.UPLOAD_MAX_BYTES:
            raise APIError(413, "file_too_large", f"files are limited to {s.UPLOAD_MAX_BYTES} bytes")
        kind = sniff(path, name)
        if kind is None or kind not in s.upload_types:
            raise APIError(415, "unsupported_file_type",
                           f"this file's content is {'not a type we know' if kind is None else kind!r}; "
                           f"allowed: {', '.join(sorted(s.upload_types))}", {"detected": kind})
        existing = db.session.execute(select(File).where(File.user_id == user.id, File.sha256 == sha)
                                      ).scalar_one_or_none()
        if existing is not None:
            return {"file": file_out(existing), "duplicate": True, **_envelope(existing)}, 200
        key = f"files/{user.id}/{sha}"
        with open(path, "rb") as src:
            get_storage().put(key, src)
    with write_tx():
        f = File(user_id=user.id, name=name, size=size, content_type=CONTENT_TYPES[kind], sha256=sha, scope=scope,
                 status=FileStatus.processing.value if kind in INDEXED else FileStatus.stored.value,
                 storage_key=key)
        db.session.add(f)
        db.session.flush()
        job = new_job("file", user.id, {"file_id": f.id, "kind": kind}, request_id=g.get("request_id"),
                      session_id=caller_session())
        f.job_id = job.id
    dispatch(job)
    return {"file": file_out(f), "duplicate": False, **_envelope(f)}, 202


def _envelope(f: File) -> dict:
    return {"job_id": f.job_id, **job_urls(f.job_id, url_binding())} if f.job_id else {}


def list_files(user: User, limit: int, offset: int, status: str | None, scope: str | None) -> dict:
    stmt = select(File).where(_visible(user))
    if status:
        stmt = stmt.where(File.status == status)
    if scope:
        stmt = stmt.where(File.scope == scope)
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.session.execute(stmt.order_by(File.created_at.desc(), File.id).limit(limit).offset(offset)).scalars()
    return {"items": [file_out(f) for f in rows], "total": total, "limit": limit, "offset": offset}


def delete_file(user: User, file_id: str) -> None:
    """Remove the blob, the chunks and their vectors, and the record."""
    f = get_visible(user, file_id)
    if f.user_id != user.id and user.role != Role.admin.value:
        raise APIError(403, "forbidden", "only the owner or an admin can delete this file")
    if f.job_id:
        job = db.session.get(Job, f.job_id)
        if job is not None and job.state in ACTIVE_STATES:
            try:
                cancel(job)
            except APIError:
                pass  # ended meanwhile
    key = f.storage_key
    with write_tx():
        db.session.execute(delete(Chunk).where(Chunk.file_id == f.id))
        db.session.execute(delete(File).where(File.id == f.id))
    get_storage().delete(key)
    index_changed(deleted=True)


def storage_keys_of(user_id: str) -> list[str]:
    """Storage keys of a user's files (to remove after the rows are gone)."""
    return list(db.session.execute(select(File.storage_key).where(File.user_id == user_id)).scalars())
