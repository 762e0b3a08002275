"""Request and response schemas of /api/tts and /api/audio."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import JobEnvelope, PathId, Strict


class TTSBody(Strict):
    text: str = Field(min_length=1, max_length=100_000)
    voice: str | None = Field(None, max_length=64)
    format: Literal["wav", "ogg", "mp3"] | None = None


class TTSResponse(JobEnvelope):
    pass


class Voice(BaseModel):
    id: str
    name: str | None = None
    language: str | None = None


class VoicesResponse(BaseModel):
    engine: str
    default: str | None = None
    voices: list[Voice]


class AudioPath(BaseModel):
    audio_id: PathId
