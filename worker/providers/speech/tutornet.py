"""The original mentor system's TTS gateway (the `tutornet` speech engine).

POST {TTS_BASE_URL}/tts/response as multipart/form-data with the field `tts_text`; for a
cloned voice also `prompt_text` (what the prompt recording says, TTS_PROMPT_TEXT) and the
file `prompt_wav` (TTS_PROMPT_WAV, a path). The answer is raw 16-bit little-endian mono PCM
(streamed) at the gateway's rate, TTS_SAMPLE_RATE (22050); a WAV answer is read as such.
Unreachable, 429 and 5xx are SpeechUnavailable; other 4xx are SpeechError.

Voices: "clone" (the configured prompt; the default when TTS_PROMPT_WAV is set) and
"default" (the gateway's own voice, no prompt sent).
"""
from __future__ import annotations

from pathlib import Path

from worker.providers.speech.audio import from_wav
from worker.providers.speech.base import Audio, SpeechError, post, setting


class TutorNetSpeech:
    """The TutorNet gateway's POST /tts/response at TTS_BASE_URL."""
    name = "tutornet"

    def __init__(self, base_url: str | None = None, sample_rate: int | None = None,
                 prompt_text: str | None = None, prompt_wav: str | None = None, api_key: str | None = None):
        base_url = base_url or setting("TTS_BASE_URL", "")
        if not base_url:
            raise SpeechError("TTS_BASE_URL is not set (the TutorNet TTS gateway's root)")
        self.url = base_url.rstrip("/") + "/tts/response"
        self.sample_rate = int(sample_rate or setting("TTS_SAMPLE_RATE", 22050))
        self.prompt_text = prompt_text if prompt_text is not None else setting("TTS_PROMPT_TEXT", "")
        wav = prompt_wav if prompt_wav is not None else setting("TTS_PROMPT_WAV", "")
        self.prompt_wav = Path(wav) if wav else None
        api_key = api_key if api_key is not None else setting("TTS_API_KEY", "")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = (float(setting("TTS_CONNECT_TIMEOUT", 5.0)), float(setting("TTS_READ_TIMEOUT", 60.0)))

    def voices(self) -> list[dict]:
        """The cloned voice first when a prompt recording is configured, then the gateway's own."""
        own = {"id": "default", "name": "TutorNet voice", "language": "multilingual"}
        if self.prompt_wav is None:
            return [own]
        return [{"id": "clone", "name": f"Cloned voice ({self.prompt_wav.name})", "language": "multilingual"}, own]

    def synthesize(self, text: str, voice: str | None = None) -> Audio:
        """The text spoken by the gateway, sending the prompt recording for `clone`."""
        voice = voice or self.voices()[0]["id"]
        if voice not in ("default", "clone") or (voice == "clone" and self.prompt_wav is None):
            raise SpeechError(f"unknown voice {voice!r} for TutorNet: {', '.join(v['id'] for v in self.voices())}")
        if not text.strip():
            return Audio(pcm=b"", sample_rate=self.sample_rate)
        # (None, value) makes a plain form field: always multipart, as a browser's FormData.
        fields: dict = {"tts_text": (None, text)}
        if voice == "clone":
            try:
                recording = self.prompt_wav.read_bytes()
            except OSError as exc:
                raise SpeechError(f"cannot read TTS_PROMPT_WAV {self.prompt_wav}: {exc}") from exc
            fields["prompt_text"] = (None, self.prompt_text)
            fields["prompt_wav"] = (self.prompt_wav.name, recording, "audio/wav")
        data = post(self.url, files=fields, headers=self.headers, timeout=self.timeout, what="the TutorNet TTS gateway")
        if data[:4] == b"RIFF":
            return from_wav(data)
        if not data:
            raise SpeechError("the TutorNet TTS gateway sent no audio")
        return Audio(pcm=data[:len(data) & ~1], sample_rate=self.sample_rate)
