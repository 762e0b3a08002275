"""Audio for speech: WAV in and out, mp3/ogg through sox, durations, silence and joining.

Audio is always 16-bit signed little-endian mono PCM (`Audio`). mp3 and ogg (Vorbis) are
made by Debian's `sox` (with libsox-fmt-mp3 and libsox-fmt-base; scripts/ensure-tts
installs them), run as a subprocess that reads raw PCM on stdin and writes the file on stdout.
"""
from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import wave
from array import array

from worker.providers.speech.base import Audio, SpeechError

CONTENT_TYPES = {"wav": "audio/wav", "ogg": "audio/ogg", "mp3": "audio/mpeg"}
# sox's -C per format: mp3 at 64 kbit/s (mono speech), Vorbis quality 3.
_SOX_COMPRESSION = {"mp3": "64", "ogg": "3"}
CONVERT_TIMEOUT = 60.0


def to_wav(audio: Audio) -> bytes:
    """A WAV file (RIFF, PCM 16-bit mono) of the audio."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.sample_rate)
        w.writeframes(audio.pcm)
    return buf.getvalue()


def from_wav(data: bytes) -> Audio:
    """The audio of a PCM WAV file, as 16-bit mono (other widths converted, channels mixed down).

    Tolerates the header of a streamed WAV (espeak-ng --stdout, many HTTP servers) whose
    sizes are 0 or 0x7fffffff: the data chunk then runs to the end of the bytes.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechError("not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif cid == b"data":
            if fmt is None:
                raise SpeechError("WAV data before its fmt chunk")
            pcm = data[body:] if body + size > len(data) or size == 0 else data[body:body + size]
            return _normalise(pcm, fmt)
        pos = body + size + (size & 1)
    raise SpeechError("WAV without a data chunk")


def _normalise(pcm: bytes, fmt: tuple) -> Audio:
    tag, channels, rate, _, _, bits = fmt
    if tag not in (1, 0xFFFE) or bits not in (8, 16, 24, 32) or channels < 1:
        raise SpeechError(f"unsupported WAV encoding (format {tag}, {bits} bits, {channels} channels)")
    width = bits // 8
    pcm = pcm[:len(pcm) - len(pcm) % (width * channels)]
    if width != 2:
        if width == 1:  # unsigned 8-bit
            samples = array("h", ((b - 128) << 8 for b in pcm))
        else:  # take the top two bytes of each little-endian sample
            samples = array("h", (int.from_bytes(pcm[i + width - 2:i + width], "little", signed=True)
                                  for i in range(0, len(pcm), width)))
    else:
        samples = array("h", pcm)
        if sys.byteorder != "little":
            samples.byteswap()
    if channels > 1:
        samples = array("h", (sum(samples[i:i + channels]) // channels
                              for i in range(0, len(samples), channels)))
    if sys.byteorder != "little":
        samples.byteswap()
    return Audio(pcm=samples.tobytes(), sample_rate=rate)


def duration(audio: Audio) -> float:
    """Seconds of audio."""
    return len(audio.pcm) // 2 / audio.sample_rate if audio.sample_rate else 0.0


def silence(seconds: float, sample_rate: int) -> Audio:
    """`seconds` of silence at `sample_rate`."""
    return Audio(pcm=bytes(2 * int(round(seconds * sample_rate))), sample_rate=sample_rate)


def concat(parts: list[Audio], gap: float = 0.15) -> Audio:
    """The parts one after the other with `gap` seconds of silence between them (same rate only)."""
    if not parts:
        raise ValueError("nothing to join")
    rates = {p.sample_rate for p in parts}
    if len(rates) > 1:
        raise ValueError(f"cannot join audio of different sample rates: {sorted(rates)}")
    rate = rates.pop()
    pause = silence(gap, rate).pcm
    return Audio(pcm=pause.join(p.pcm[:len(p.pcm) & ~1] for p in parts), sample_rate=rate)


def to_format(audio: Audio, fmt: str) -> tuple[bytes, str]:
    """The audio as a `wav`, `ogg` (Vorbis) or `mp3` file, and its content type."""
    fmt = fmt.lower()
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown audio format {fmt!r}: one of {', '.join(CONTENT_TYPES)}")
    if fmt == "wav":
        return to_wav(audio), CONTENT_TYPES[fmt]
    sox = shutil.which("sox")
    if sox is None:
        raise SpeechError("sox is not installed (needed for ogg and mp3): run scripts/ensure-tts")
    cmd = [sox, "-q", "-t", "raw", "-r", str(audio.sample_rate), "-e", "signed-integer", "-b", "16",
           "-c", "1", "-L", "-", "-t", fmt, "-C", _SOX_COMPRESSION[fmt], "-"]
    try:
        done = subprocess.run(cmd, input=audio.pcm, capture_output=True, timeout=CONVERT_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise SpeechError(f"sox took longer than {CONVERT_TIMEOUT:.0f} s to make {fmt}") from exc
    if done.returncode != 0 or not done.stdout:
        raise SpeechError(f"sox could not make {fmt}: {done.stderr.decode(errors='replace').strip()[:300]}")
    return done.stdout, CONTENT_TYPES[fmt]
