"""Any OpenAI-compatible POST /v1/audio/speech endpoint (the `openai` speech engine).

The body is {model, input, voice, response_format}; "pcm" (the default, TTS_RESPONSE_FORMAT)
answers raw 16-bit little-endian mono PCM at 24 kHz, "wav" a WAV file. A WAV answer is read
as such whatever was asked (some compatible servers only make WAV). Unreachable, 429 and 5xx
are SpeechUnavailable; other 4xx (unknown voice, empty input, bad key) are SpeechError.
"""
from __future__ import annotations

from worker.providers.speech.audio import from_wav
from worker.providers.speech.base import Audio, SpeechError, post, setting

VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")
PCM_RATE = 24000  # OpenAI's "pcm": 24 kHz, 16-bit signed little-endian, mono


class OpenAISpeech:
    """An OpenAI-compatible /audio/speech endpoint at TTS_BASE_URL."""
    name = "openai"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, model: str | None = None,
                 response_format: str | None = None, default_voice: str | None = None):
        base_url = base_url or setting("TTS_BASE_URL", "")
        if not base_url:
            raise SpeechError("TTS_BASE_URL is not set (e.g. https://api.openai.com/v1)")
        self.url = base_url.rstrip("/") + "/audio/speech"
        api_key = api_key if api_key is not None else setting("TTS_API_KEY", "")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model or setting("TTS_MODEL", "tts-1")
        self.response_format = (response_format or setting("TTS_RESPONSE_FORMAT", "pcm")).lower()
        if self.response_format not in ("pcm", "wav"):
            raise SpeechError(f"TTS_RESPONSE_FORMAT must be pcm or wav, not {self.response_format!r}")
        self.default_voice = default_voice or setting("TTS_VOICE", "") or VOICES[0]
        self.timeout = (float(setting("TTS_CONNECT_TIMEOUT", 5.0)), float(setting("TTS_READ_TIMEOUT", 60.0)))

    def voices(self) -> list[dict]:
        """OpenAI's six voices (a compatible server may know others; any name is sent on)."""
        return [{"id": v, "name": v.capitalize(), "language": "multilingual"} for v in VOICES]

    def synthesize(self, text: str, voice: str | None = None) -> Audio:
        """The text spoken by the service, as PCM (or read from the WAV it sent)."""
        if not text.strip():
            return Audio(pcm=b"", sample_rate=PCM_RATE)
        body = {"model": self.model, "input": text, "voice": voice or self.default_voice,
                "response_format": self.response_format}
        data = post(self.url, json=body, headers=self.headers, timeout=self.timeout, what="the speech service")
        if data[:4] == b"RIFF":
            return from_wav(data)
        if self.response_format == "wav":
            raise SpeechError(f"the speech service sent no WAV: {data[:60]!r}")
        if not data:
            raise SpeechError("the speech service sent no audio")
        return Audio(pcm=data[:len(data) & ~1], sample_rate=PCM_RATE)
