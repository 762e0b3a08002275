"""Synthesised audio: one row per stored clip (a whole reply, a sentence of it, or a TTS request)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.database import db, utcnow
from shared.models.user import new_id


class AudioClip(db.Model):
    """A stored audio clip: its owner, the job and message it came from, voice, format, size and duration."""
    __tablename__ = "audio_clips"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    message_id: Mapped[str | None] = mapped_column(String(32))
    sentence: Mapped[int | None] = mapped_column(Integer)  # its index when this is one sentence of a reply
    voice: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(8))
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    duration: Mapped[float] = mapped_column(Float)
    storage_key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
