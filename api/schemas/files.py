"""Request and response schemas of /api/upload, /api/files and /api/knowledge."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask_openapi3 import FileStorage
from pydantic import BaseModel, Field

from api.schemas.common import PathId, Strict

Scope = Literal["personal", "public"]
Status = Literal["processing", "ready", "stored", "failed"]


class UploadForm(BaseModel):
    """Request of POST /api/upload/file (multipart): the file and its scope."""
    file: FileStorage
    scope: Scope = "personal"


class FileOut(BaseModel):
    """An uploaded file's record as /api/files answers it."""
    id: str
    name: str
    size: int
    content_type: str
    sha256: str
    scope: str
    status: str
    error: dict[str, Any] | None = None
    page_count: int | None = None
    chunk_count: int
    job_id: str | None = None
    owner_id: str
    created_at: datetime
    download_url: str | None = Field(None, description="signed, short-lived; in single-file answers")


class UploadResponse(BaseModel):
    """Response of POST /api/upload/file: the file, whether it was a duplicate, and its indexing job."""
    file: FileOut
    duplicate: bool = Field(description="true when this user had already uploaded the same content")
    job_id: str
    status_url: str
    events_url: str


class FileQuery(Strict):
    """Query of GET /api/files: paging, and filters on status and scope."""
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1_000_000)
    status: Status | None = None
    scope: Scope | None = None


class FilePage(BaseModel):
    """Response of GET /api/files: one page of the files the user can see."""
    items: list[FileOut]
    total: int
    limit: int
    offset: int


class FilePath(BaseModel):
    """Path of /api/files/<file_id>."""
    file_id: PathId


class SearchBody(Strict):
    """Request of POST /api/knowledge/search: the query, how many hits, and which files to search."""
    query: str = Field(min_length=1, max_length=1000)
    k: int = Field(5, ge=1, le=50)
    scope: Literal["all", "personal", "public"] = "all"


class Hit(BaseModel):
    """One passage found by a knowledge search: its file, page, text and score."""
    file_id: str
    file_name: str
    page: int | None = None
    text: str
    score: float


class SearchResponse(BaseModel):
    """Response of POST /api/knowledge/search: the hits, best first."""
    hits: list[Hit]
