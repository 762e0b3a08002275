"""Speech requests: validate against the voices the tts workers publish, queue the job, serve audio.

A request counts against its user's TTS_RATE_LIMIT and needs room left in their storage quota
(the clip it makes counts against it).
"""
from __future__ import annotations

from api.errors import APIError
from api.extensions.limiter import per_user
from api.services.files import ensure_room
from api.services.identity import Caller
from api.services.jobs import enqueue, envelope
from shared.database import db
from shared.models import AudioClip
from shared.payloads import TTSPayload
from shared.redis_client import get_redis
from shared.settings import get_settings
from shared.speech import read_voices


def voices() -> dict:
    """Return the voices the tts workers published; 503 speech_unavailable when no worker has."""
    published = read_voices(get_redis())
    if published is None:
        raise APIError(503, "speech_unavailable", "no speech worker is running; retry shortly", None,
                       {"Retry-After": "5"})
    return published


def request_speech(user: Caller, text: str, voice: str | None, fmt: str | None) -> dict:
    """Check the text, voice, rate limit and quota, then queue a tts job; return its envelope."""
    s = get_settings()
    if not text.strip():
        raise APIError(400, "empty_text", "there is no text to speak")
    if len(text) > s.TTS_MAX_CHARS:
        raise APIError(400, "text_too_long", f"the text is longer than {s.TTS_MAX_CHARS} characters",
                       {"limit": s.TTS_MAX_CHARS})
    per_user(s.TTS_RATE_LIMIT, "tts", user.id)
    ensure_room(user.id, 1, new_file=False)  # the clip to come needs a byte at least
    published = voices()
    known = {v["id"] for v in published["voices"]}
    if voice is not None and voice not in known:
        raise APIError(400, "unknown_voice", f"unknown voice {voice!r}", {"voices": sorted(known)})
    job = enqueue("tts", user.id, TTSPayload(text=text, voice=voice or published.get("default") or s.TTS_VOICE or None,
                                             format=fmt or s.TTS_DEFAULT_FORMAT))
    return envelope(job.id)


def get_clip(user: Caller, audio_id: str) -> AudioClip:
    """Return the caller's audio clip; 404 if it does not exist or is another user's."""
    clip = db.session.get(AudioClip, audio_id) if len(audio_id) <= 64 else None
    if clip is None or clip.user_id != user.id:
        raise APIError(404, "not_found", "no such audio")
    return clip
