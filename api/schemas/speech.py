"""Request and response schemas of /api/tts and /api/audio."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import JobEnvelope, PathId, Strict


class TTSBody(Strict):
    """Request of POST /api/tts: the text, and optionally a voice and an audio format."""
    text: str = Field(min_length=1, max_length=100_000)
    voice: str | None = Field(None, max_length=64)
    format: Literal["wav", "ogg", "mp3"] | None = None


class TTSResponse(JobEnvelope):
    """Response of POST /api/tts (202): the synthesis job."""
    pass


class Voice(BaseModel):
    """One voice the speech engine offers."""
    id: str
    name: str | None = None
    language: str | None = None


class VoicesResponse(BaseModel):
    """Response of GET /api/tts/voices: the engine, its default voice and its voices."""
    engine: str
    default: str | None = None
    voices: list[Voice]


class AudioPath(BaseModel):
    """Path of /api/audio/<audio_id>."""
    audio_id: PathId
