"""Audio and text helpers for speech: WAV in and out, mp3/ogg through sox, joining, text cleaning, sentences.

Audio is always 16-bit signed little-endian mono PCM (`Audio`). mp3 and ogg (Vorbis) are
made by Debian's `sox` (with libsox-fmt-mp3 and libsox-fmt-base; scripts/ensure-tts
installs them), run as a subprocess that reads raw PCM on stdin and writes the file on stdout.
"""
from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
import sys
import wave
from array import array

from worker.providers.tts.base import Audio, TTSError

CONTENT_TYPES = {"wav": "audio/wav", "ogg": "audio/ogg", "mp3": "audio/mpeg"}
# sox's -C per format: mp3 at 64 kbit/s (mono speech), Vorbis quality 3.
_SOX_COMPRESSION = {"mp3": "64", "ogg": "3"}
CONVERT_TIMEOUT = 60.0


# --- audio -------------------------------------------------------------------------------

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
        raise TTSError("not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif cid == b"data":
            if fmt is None:
                raise TTSError("WAV data before its fmt chunk")
            pcm = data[body:] if body + size > len(data) or size == 0 else data[body:body + size]
            return _normalise(pcm, fmt)
        pos = body + size + (size & 1)
    raise TTSError("WAV without a data chunk")


def _normalise(pcm: bytes, fmt: tuple) -> Audio:
    tag, channels, rate, _, _, bits = fmt
    if tag not in (1, 0xFFFE) or bits not in (8, 16, 24, 32) or channels < 1:
        raise TTSError(f"unsupported WAV encoding (format {tag}, {bits} bits, {channels} channels)")
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
        raise TTSError("sox is not installed (needed for ogg and mp3): run scripts/ensure-tts")
    cmd = [sox, "-q", "-t", "raw", "-r", str(audio.sample_rate), "-e", "signed-integer", "-b", "16",
           "-c", "1", "-L", "-", "-t", fmt, "-C", _SOX_COMPRESSION[fmt], "-"]
    try:
        done = subprocess.run(cmd, input=audio.pcm, capture_output=True, timeout=CONVERT_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise TTSError(f"sox took longer than {CONVERT_TIMEOUT:.0f} s to make {fmt}") from exc
    if done.returncode != 0 or not done.stdout:
        raise TTSError(f"sox could not make {fmt}: {done.stderr.decode(errors='replace').strip()[:300]}")
    return done.stdout, CONTENT_TYPES[fmt]


# --- text --------------------------------------------------------------------------------

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?^[ \t]*\1[`~]*[ \t]*$", re.M | re.S)
_OPEN_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,}).*\Z", re.M | re.S)  # unclosed: a reply cut short
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_AUTOLINK = re.compile(r"<(?:https?|ftp|mailto):[^>\s]*>", re.I)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_IMAGE = re.compile(r"!\[[^\]]*\](?:\((?:[^()]|\([^()]*\))*\)|\[[^\]]*\])")
_LINK = re.compile(r"\[([^\]]+)\]\((?:[^()]|\([^()]*\))*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_REF_DEF = re.compile(r"^[ \t]*\[[^\]]+\]:[ \t]+\S+.*$", re.M)
_FOOTNOTE = re.compile(r"\[\^[^\]\s]+\]:?")
_CITATION = re.compile(r"\s*\[\s*\d+(?:\s*(?:[,;]|[-–]|and)\s*\d+)*\s*\]")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]+[^\s<>()\[\].,;:!?\"']", re.I)
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^[ \t]*(?:[-=_*][ \t]*){3,}$")
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+")
_BULLET = re.compile(r"^[ \t]*[-*+•][ \t]+(?:\[[ xX]\][ \t]+)?")
_NUMBERED = re.compile(r"^[ \t]*(\d{1,3})[.)][ \t]+")
_TABLE_SEP = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{2,}:?[ \t]*\|)+(?:[ \t]*:?-{2,}:?[ \t]*)?\|?[ \t]*$")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.S)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.S)
_EM_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])", re.S)
_EM_UNDER = re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])", re.S)
_TERMINAL = re.compile(r"[.!?;:…。！？]['\"’”)\]]*$")


def clean_for_speech(text: str, code: str = "(code omitted)") -> str:
    """Text as it should be spoken: Markdown, citations, code and URLs taken out, one line.

    Headings, list items, table rows and paragraphs end with a full stop when they have no
    punctuation of their own, so the voice pauses there; link text stays, links and images go;
    inline code keeps its words; a fenced code block becomes `code` ("" to drop it).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    placeholder = f"\n\n{code}\n\n" if code else "\n\n"
    text = _FENCE.sub(placeholder, text)
    text = _OPEN_FENCE.sub(placeholder, text)
    text = _HTML_COMMENT.sub(" ", text)
    text = _AUTOLINK.sub(" ", text)
    text = _HTML_TAG.sub(" ", text)
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_DEF.sub("", text)
    text = _FOOTNOTE.sub("", text)
    text = _CITATION.sub("", text)  # before reference links: [2, 3][4] is two citations
    text = _REF_LINK.sub(r"\1", text)
    text = _INLINE_CODE.sub(lambda m: m.group(2).strip(), text)
    text = _URL.sub(" ", text)

    blocks: list[str] = []  # each ends where the voice should pause
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(" ".join(paragraph))
            paragraph.clear()

    for line in text.split("\n"):
        line = _QUOTE.sub("", line)
        if not line.strip() or _RULE.match(line) or _TABLE_SEP.match(line):
            flush()  # a blank line, a rule (or setext underline) ends what came before
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            blocks.append(heading.group(1))
            continue
        if line.count("|") >= 2 or line.strip().startswith("|"):
            flush()
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            blocks.append(", ".join(c for c in cells if c))
            continue
        bullet = _BULLET.match(line)
        numbered = _NUMBERED.match(line)
        if bullet or numbered:
            flush()
            line = _BULLET.sub("", line) if bullet else _NUMBERED.sub(r"\1: ", line)
        paragraph.append(line.strip())
    flush()

    spoken = []
    for block in blocks:
        block = _STRIKE.sub(r"\1", _STRONG.sub(r"\2", block))
        block = _EM_UNDER.sub(r"\1", _EM_STAR.sub(r"\1", block))
        block = re.sub(r"\(\s*\)", " ", block)
        block = re.sub(r"\s+", " ", block).strip()
        block = re.sub(r"\s+([.,;:!?…])", r"\1", block)
        if not block.strip(" .,;:-–—*#_|>"):
            continue
        if not _TERMINAL.search(block):
            block = block.rstrip(" ,") + "."
        spoken.append(block)
    return " ".join(spoken)


# Words that end in a full stop without ending the sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "fig", "figs", "eq",
    "eqs", "no", "nos", "approx", "ca", "inc", "ltd", "co", "dept", "vol", "ch", "sec", "p", "pp",
    "al", "resp", "a.m", "p.m", "u.s", "u.k",
}
_SENTENCE_END = re.compile(r"(?:[.!?…]+['\"’”)\]]*(?=\s|$)|[。！？]+['\"’”)\]」』]*)\s*")
_CLAUSE = re.compile(r"[,;:—–](?=\s)|\s[-–—]\s")


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Sentences to speak one at a time, none longer than max_chars (long ones are cut at a
    comma, semicolon or dash, else between words). Lines are never joined."""
    sentences: list[str] = []
    for line in text.split("\n"):
        start = 0
        for m in _SENTENCE_END.finditer(line):
            piece = line[start:m.end()].strip()
            words = piece.rstrip(".!?…'\"’”)]").split()
            word = words[-1].lstrip("(\"'“‘[") if words else ""
            if m.group().rstrip() == "." and (word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())):
                continue  # "Dr. Smith", "e.g. this", "J. R. R. Tolkien"
            if piece:
                sentences.extend(_cut(piece, max_chars))
            start = m.end()
        rest = line[start:].strip()
        if rest:
            sentences.extend(_cut(rest, max_chars))
    return sentences


def _cut(sentence: str, max_chars: int) -> list[str]:
    out = []
    while len(sentence) > max_chars:
        window = sentence[:max_chars + 1]
        cut = 0
        for m in _CLAUSE.finditer(window):
            if m.end() <= max_chars and m.start() >= max_chars // 3:
                cut = m.end()
        if not cut:
            cut = window.rfind(" ")
            if cut < max_chars // 3:
                cut = max_chars  # one very long word
        head, sentence = sentence[:cut].strip(), sentence[cut:].strip()
        if head:
            out.append(head)
    if sentence:
        out.append(sentence)
    return out
