"""Uploads: sniff, hash, store, record, and queue the processing job; listing, download, delete.

An upload counts against its user's UPLOAD_RATE_LIMIT, and must fit their quota
(STORAGE_QUOTA_BYTES for files and audio clips together, MAX_FILES_PER_USER files): checked
before the blob is stored, and again in the write transaction with the user's row locked,
so concurrent uploads of one user never pass either limit. The same content again is the
file the user has (200), and counts once.

The upload is read where the multipart parser left it (a temporary file), in chunks with a
cooperative yield after each (`Yielding`), so that no upload holds the API's event loop.
"""
from __future__ import annotations

import hashlib
import time
from typing import BinaryIO

from flask import g
from sqlalchemy import bindparam, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import FileStorage

from api.errors import APIError
from api.extensions.limiter import per_user
from api.services.identity import Caller
from api.services.jobs import caller_session, cancel, envelope
from api.services.paging import page
from api.services.sniff import CONTENT_TYPES, INDEXED, display_name, sniff
from shared.database import db, write_tx
from shared.jobs import Created, dispatch, new_job
from shared.models import AudioClip, Chunk, File, FileScope, FileStatus, Job, Role, User
from shared.models.job import ACTIVE_STATES
from shared.payloads import FilePayload
from shared.retrieval.builtin import index_changed
from shared.settings import get_settings
from shared.storage import get_storage


def file_out(f: File) -> dict:
    """Return a file's record as FileOut (without its download URL)."""
    return {"id": f.id, "name": f.name, "size": f.size, "content_type": f.content_type, "sha256": f.sha256,
            "scope": f.scope, "status": f.status, "error": f.error, "page_count": f.page_count,
            "chunk_count": f.chunk_count, "job_id": f.job_id, "created_at": f.created_at, "owner_id": f.user_id}


def _visible(user: Caller):
    return or_(File.user_id == user.id, File.scope == FileScope.public.value)


def get_visible(user: Caller, file_id: str) -> File:
    """Return a file the caller owns or that is public; 404 otherwise."""
    f = db.session.get(File, file_id) if len(file_id) <= 64 else None
    if f is None or not (f.user_id == user.id or f.scope == FileScope.public.value):
        raise APIError(404, "not_found", "no such file")
    return f


_USAGE = select(
    select(func.coalesce(func.sum(File.size), 0)).where(File.user_id == bindparam("uid")).scalar_subquery(),
    select(func.count()).select_from(File).where(File.user_id == bindparam("uid")).scalar_subquery(),
    select(func.coalesce(func.sum(AudioClip.size), 0)).where(AudioClip.user_id == bindparam("uid")).scalar_subquery())


def storage_used(user_id: str) -> tuple[int, int]:
    """(bytes, files) a user holds; their files and their audio clips count against the quota."""
    file_bytes, files, audio_bytes = db.session.execute(_USAGE, {"uid": user_id}).one()
    return int(file_bytes) + int(audio_bytes), int(files)


def ensure_room(user_id: str, size: int, new_file: bool) -> None:
    """413 `quota_exceeded` unless `size` more bytes, and one more file if `new_file`, fit the user's quota."""
    s = get_settings()
    used, files = storage_used(user_id)
    if new_file and files >= s.MAX_FILES_PER_USER:
        raise APIError(413, "quota_exceeded", f"you have {files} files; the limit is {s.MAX_FILES_PER_USER}",
                       {"resource": "files", "used": files, "limit": s.MAX_FILES_PER_USER})
    if used + size > s.STORAGE_QUOTA_BYTES:
        raise APIError(413, "quota_exceeded",
                       f"your files and audio take {used} bytes; {size} more would pass your quota of "
                       f"{s.STORAGE_QUOTA_BYTES} bytes", {"resource": "bytes", "used": used,
                                                           "limit": s.STORAGE_QUOTA_BYTES, "size": size})


class Yielding:
    """A stream whose every read is followed by a cooperative yield (time.sleep(0) is gevent's
    under its monkey-patching): parsing, hashing or storing a large upload lets the other
    requests of the process run between chunks."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw

    def read(self, size: int = -1) -> bytes:
        """Read as the stream does, then yield."""
        data = self.raw.read(size)
        time.sleep(0)
        return data


def _measure(stream: BinaryIO) -> tuple[str, int]:
    """SHA-256 and size of the stream, from its start; it is left at its start."""
    digest = hashlib.sha256()
    size = 0
    stream.seek(0)
    reader = Yielding(stream)
    while chunk := reader.read(256 * 1024):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return digest.hexdigest(), size


def _same_content(user_id: str, sha: str) -> File | None:
    return db.session.execute(select(File).where(File.user_id == user_id, File.sha256 == sha)).scalar_one_or_none()


def _drop_unrecorded(key: str) -> None:
    """Remove a stored blob that no file record came to use."""
    if db.session.execute(select(File.id).where(File.storage_key == key)).first() is None:
        get_storage().delete(key)


def upload(user: Caller, upload: FileStorage | None, scope: str) -> tuple[dict, int]:
    """Store an upload and queue its processing (202), or answer the file with the same content (200)."""
    s = get_settings()
    if upload is None:
        raise APIError(400, "missing_file", "send the file as multipart/form-data in the field `file`")
    if scope == FileScope.public.value and user.role not in (Role.tutor.value, Role.admin.value):
        raise APIError(403, "forbidden", "only tutors and admins can upload public files")
    per_user(s.UPLOAD_RATE_LIMIT, "upload", user.id)
    name = display_name(upload.filename)
    sha, size = _measure(upload.stream)
    if size == 0:
        raise APIError(400, "empty_file", "the file is empty")
    if size > s.UPLOAD_MAX_BYTES:
        raise APIError(413, "file_too_large", f"files are limited to {s.UPLOAD_MAX_BYTES} bytes")
    kind = sniff(upload.stream, name)
    if kind is None or kind not in s.upload_types:
        raise APIError(415, "unsupported_file_type",
                       f"this file's content is {'not a type we know' if kind is None else kind!r}; "
                       f"allowed: {', '.join(sorted(s.upload_types))}", {"detected": kind})
    existing = _same_content(user.id, sha)
    if existing is not None:
        return _duplicate(existing)
    ensure_room(user.id, size, new_file=True)
    key = f"files/{user.id}/{sha}"
    upload.stream.seek(0)
    get_storage().put(key, Yielding(upload.stream))
    try:
        f, job = _record(user, name, size, kind, sha, scope, key)
    except IntegrityError:  # the same content, raced in from another request of this user
        existing = _same_content(user.id, sha)
        if existing is None:
            raise
        return _duplicate(existing)
    except Exception:
        _drop_unrecorded(key)
        raise
    dispatch(job)
    return {"file": file_out(f), "duplicate": False, **_envelope(f)}, 202


def _duplicate(existing: File) -> tuple[dict, int]:
    return {"file": file_out(existing), "duplicate": True, **_envelope(existing)}, 200


def _record(user: Caller, name: str, size: int, kind: str, sha: str, scope: str, key: str) -> tuple[File, Created]:
    """The file's record and its job, in one transaction that holds the user's row while it checks the quota."""
    with write_tx():
        db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
        ensure_room(user.id, size, new_file=True)  # concurrent uploads of this user wait here for each other
        f = File(user_id=user.id, name=name, size=size, content_type=CONTENT_TYPES[kind], sha256=sha, scope=scope,
                 status=FileStatus.processing.value if kind in INDEXED else FileStatus.stored.value,
                 storage_key=key)
        db.session.add(f)
        db.session.flush()
        job = new_job("file", user.id, FilePayload(file_id=f.id, kind=kind), request_id=g.get("request_id"),
                      session_id=caller_session())
        f.job_id = job.id
    return f, job


def _envelope(f: File) -> dict:
    return envelope(f.job_id) if f.job_id else {}


def list_files(user: Caller, limit: int, offset: int, status: str | None, scope: str | None) -> dict:
    """Return a page of the files the caller can see (own and public), newest first, filtered by status and scope."""
    stmt = select(File).where(_visible(user))
    if status:
        stmt = stmt.where(File.status == status)
    if scope:
        stmt = stmt.where(File.scope == scope)
    return page(stmt, (File.created_at.desc(), File.id), limit, offset, file_out)


def delete_file(user: Caller, file_id: str) -> None:
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
