"""Text-to-speech engines: `get_engine()` returns the one TTS_ENGINE names.

| engine | what |
|---|---|
| `local` (default) | Piper with the en_US-joe-medium voice, as a separate process per worker process (piper.py) |
| `espeak` | Debian's espeak-ng as a subprocess: robotic but tiny and instant (espeak.py) |
| `openai` | any OpenAI-compatible /v1/audio/speech endpoint (openai.py) |
| `tutornet` | the original mentor system's TTS gateway, POST /tts/response (tutornet.py) |

Every engine speaks one sentence or a short text at a time and returns `Audio` (16-bit mono
PCM and its rate); `text.py` cleans text for speech and splits it into sentences, `audio.py`
joins the pieces and encodes wav/ogg/mp3.
"""
from __future__ import annotations

import threading

from worker.providers.speech.base import Audio, SpeechEngine, SpeechError, SpeechUnavailable, setting

__all__ = ["Audio", "SpeechEngine", "SpeechError", "SpeechUnavailable", "ENGINES", "get_engine"]

ENGINES = ("local", "espeak", "openai", "tutornet")

_cache: dict[str, SpeechEngine] = {}
_lock = threading.Lock()


def get_engine(name: str | None = None) -> SpeechEngine:
    """The engine TTS_ENGINE names (or `name`), built once per process."""
    name = name or setting("TTS_ENGINE", "local")
    with _lock:
        if name not in _cache:
            if name == "local":
                from worker.providers.speech.piper import PiperEngine as cls
            elif name == "espeak":
                from worker.providers.speech.espeak import EspeakEngine as cls
            elif name == "openai":
                from worker.providers.speech.openai import OpenAISpeech as cls
            elif name == "tutornet":
                from worker.providers.speech.tutornet import TutorNetSpeech as cls
            else:
                raise SpeechError(f"unknown TTS_ENGINE {name!r}: one of {', '.join(ENGINES)}")
            _cache[name] = cls()
        return _cache[name]
