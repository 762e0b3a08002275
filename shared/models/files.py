"""Uploaded files and the chunks of text indexed from them.

Full-text search lives beside these tables, made by migration 0003: an FTS5 table
`chunks_fts` on SQLite, a generated `tsv` column with a GIN index on PostgreSQL.
"""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.database import db, utcnow
from shared.models.user import new_id


class FileStatus(str, enum.Enum):
    """Where an uploaded file stands: being indexed, searchable, kept unindexed, or failed."""
    processing = "processing"  # queued or being indexed
    ready = "ready"            # indexed and searchable
    stored = "stored"          # kept but not indexed (images, audio)
    failed = "failed"


class FileScope(str, enum.Enum):
    """Who can see a file and search its chunks: its owner only (personal) or every user (public)."""
    personal = "personal"
    public = "public"


class File(db.Model):
    """An uploaded file: its blob's storage key, content hash, scope, indexing status and job."""
    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("user_id", "sha256"), Index("ix_files_scope_status", "scope", "status"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))  # for display only; never a path
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16), default=FileScope.personal.value)
    status: Mapped[str] = mapped_column(String(16), default=FileStatus.processing.value)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    storage_key: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[str | None] = mapped_column(String(32))
    page_count: Mapped[int | None] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Chunk(db.Model):
    """One passage of a file's text, with its page, order, owner and scope, and its embedding if any."""
    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_file_ordinal", "file_id", "ordinal"),
                      Index("ix_chunks_owner_scope", "user_id", "scope"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_id: Mapped[str] = mapped_column(String(32), ForeignKey("files.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(32))  # the file's owner, for visibility filters
    scope: Mapped[str] = mapped_column(String(16))
    page: Mapped[int | None] = mapped_column(Integer)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # float16 vector
