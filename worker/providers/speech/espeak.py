"""Debian's espeak-ng as a subprocess (the `espeak` speech engine): robotic, but tiny and instant.

`espeak-ng --stdout -v VOICE` reads the text on stdin (never as an argument) and writes a WAV
(22050 Hz, 16-bit mono) with a streamed header, which audio.from_wav reads. voices() offers
the English voices of `espeak-ng --voices=en` (not the MBROLA ones, which need extra
packages); any voice espeak-ng knows is accepted. scripts/ensure-tts installs espeak-ng.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading

from worker.providers.speech.audio import from_wav
from worker.providers.speech.base import Audio, SpeechError, setting

DEFAULT_VOICE = "en-us"
_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+./-]{0,63}$")


def _bcp47(code: str) -> str:
    parts = code.split("-")
    if len(parts) > 1 and len(parts[1]) == 2:
        parts[1] = parts[1].upper()
    return "-".join(parts)


class EspeakEngine:
    """espeak-ng run once per text, reading it on stdin and writing a WAV on stdout."""
    name = "espeak"

    def __init__(self, binary: str | None = None, speed: int | None = None, timeout: float | None = None):
        self.binary = binary or shutil.which("espeak-ng")
        self.speed = speed  # words per minute; espeak-ng's default (175) when None
        self.timeout = float(timeout or setting("TTS_READ_TIMEOUT", 60.0))
        self.default_voice = setting("TTS_VOICE", "") or DEFAULT_VOICE
        self._voices: list[dict] | None = None
        self._lock = threading.Lock()

    def _need_binary(self) -> str:
        if not self.binary:
            raise SpeechError("espeak-ng is not installed: run scripts/ensure-tts (or apt-get install espeak-ng)")
        return self.binary

    def voices(self) -> list[dict]:
        """The English voices espeak-ng lists, `en-us` first (asked once, then cached)."""
        with self._lock:
            if self._voices is None:
                try:
                    done = subprocess.run([self._need_binary(), "--voices=en"], capture_output=True,
                                          timeout=self.timeout)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise SpeechError(f"espeak-ng --voices failed: {exc}") from exc
                found: dict[str, dict] = {}
                # Pty Language Age/Gender VoiceName File Other-languages
                for line in done.stdout.decode(errors="replace").splitlines()[1:]:
                    cols = line.split()
                    if len(cols) < 5 or cols[4].startswith(("mb/", "!v/")) or cols[1] in found:
                        continue
                    found[cols[1]] = {"id": cols[1], "name": cols[3].replace("_", " ") + " (eSpeak NG)",
                                      "language": _bcp47(cols[1])}
                default = found.pop(DEFAULT_VOICE, None)
                self._voices = ([default] if default else []) + sorted(found.values(), key=lambda v: v["id"])
            return list(self._voices)

    def synthesize(self, text: str, voice: str | None = None) -> Audio:
        """The text spoken by espeak-ng in `voice` (any voice name it knows)."""
        voice = voice or self.default_voice
        if not _VOICE_NAME.match(voice):
            raise SpeechError(f"not an espeak-ng voice name: {voice!r}")
        cmd = [self._need_binary(), "--stdout", "-b", "1", "-v", voice]
        if self.speed:
            cmd += ["-s", str(int(self.speed))]
        try:
            done = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            raise SpeechError(f"espeak-ng took longer than {self.timeout:.0f} s") from exc
        except OSError as exc:
            raise SpeechError(f"cannot run espeak-ng: {exc}") from exc
        if done.returncode != 0:
            raise SpeechError(f"espeak-ng failed (voice {voice!r}): "
                           f"{done.stderr.decode(errors='replace').strip()[:300]}")
        return from_wav(done.stdout)
