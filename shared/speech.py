"""What the API knows of speech without running an engine: the voices, as the tts workers publish them.

A tts worker writes its engine's voices to Redis every few seconds (with a TTL); the API
lists and validates voices from there, so it never imports an engine.
"""
from __future__ import annotations

import json

import redis

VOICES_KEY = "tts:voices"
FORMATS = {"wav": "audio/wav", "ogg": "audio/ogg", "mp3": "audio/mpeg"}


def publish_voices(r: redis.Redis, engine: str, voices: list[dict], default: str | None) -> None:
    """Write the engine's voices and default voice to Redis for the API, kept 60 seconds."""
    r.set(VOICES_KEY, json.dumps({"engine": engine, "voices": voices, "default": default}), ex=60)


def read_voices(r: redis.Redis) -> dict | None:
    """Return the voices a tts worker last published ({engine, voices, default}), or None if none has."""
    raw = r.get(VOICES_KEY)
    return json.loads(raw) if raw else None
