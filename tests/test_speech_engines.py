"""Speech engines with real audio, and the helpers around them.

- local: Piper in its own venv as a separate process, with the en_US-joe-medium voice
  (scripts/ensure-tts provides both); the WAV it makes is read back and measured;
- espeak: Debian's espeak-ng;
- openai and tutornet: small servers in this process that speak those protocols exactly and
  answer a real sine tone; and the same engines against a server that is down or refuses;
- mp3/ogg made by sox and read back by soxi; text cleaning and sentence splitting.
"""
from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
import wave
from array import array
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support import free_port
from worker.providers.speech import base as speech_base
from worker.providers.speech.audio import concat, duration, from_wav, to_format, to_wav
from worker.providers.speech.base import Audio, SpeechError, SpeechUnavailable
from worker.providers.speech.text import clean_for_speech, split_sentences

SENTENCE = "The derivative of a function tells us how quickly its value changes at every point."  # 15 words


def piper_paths() -> tuple[Path, Path] | None:
    from worker.providers.speech.piper import default_python, default_voice_path
    python = Path(os.environ.get("PIPER_PYTHON") or default_python())
    voice = Path(os.environ.get("TTS_VOICE_PATH") or default_voice_path())
    if os.access(python, os.X_OK) and voice.is_file() and Path(f"{voice}.json").is_file():
        return python, voice
    return None


needs_piper = pytest.mark.skipif(piper_paths() is None,
                                 reason="piper venv or voice missing: run scripts/ensure-tts")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng missing: run scripts/ensure-tts (apt-get install espeak-ng)")
needs_sox = pytest.mark.skipif(shutil.which("sox") is None or shutil.which("soxi") is None,
                               reason="sox missing: run scripts/ensure-tts (apt-get install sox libsox-fmt-mp3)")


def sine(seconds: float, rate: int, freq: float = 440.0, amplitude: int = 12000) -> bytes:
    samples = array("h", (int(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(int(seconds * rate))))
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()


def read_wav(data: bytes) -> tuple[int, float, float]:
    """(sample rate, seconds, RMS) of a 16-bit mono WAV file, read with the stdlib."""
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    samples = array("h", frames)
    if sys.byteorder != "little":
        samples.byteswap()
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0
    return rate, len(samples) / rate, rms


def assert_speech(audio: Audio, rate: int, words: int) -> float:
    got_rate, seconds, rms = read_wav(to_wav(audio))
    assert got_rate == rate
    assert rms > 300, f"nearly silent: RMS {rms:.0f}"
    assert 0.2 * words <= seconds <= 1.0 * words, f"{seconds:.2f} s for {words} words"
    return seconds


# --- local: Piper ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def piper():
    from worker.providers.speech.piper import PiperEngine
    python, voice = piper_paths()
    engine = PiperEngine(voice_path=voice, python=python)
    yield engine
    engine.close()


@needs_piper
def test_piper_speaks_a_sentence_in_a_separate_process(piper):
    started = time.monotonic()
    load = piper.start()
    first = time.monotonic() - started
    rate = json.loads(Path(f"{piper.voice_path}.json").read_text())["audio"]["sample_rate"]
    started = time.monotonic()
    audio = piper.synthesize(SENTENCE, None)
    took = time.monotonic() - started
    seconds = assert_speech(audio, rate, words=len(SENTENCE.split()))
    print(f"\npiper: start {first:.2f} s (voice load {load:.2f} s); {seconds:.2f} s of speech in {took:.2f} s, "
          f"real-time factor {took / seconds:.3f}")
    assert took < seconds, "slower than real time"
    # GPL-3.0 piper never runs inside the test (worker) process.
    assert "piper" not in sys.modules and "onnxruntime" not in sys.modules


@needs_piper
def test_piper_keeps_one_process_and_restarts_it_when_it_dies(piper):
    piper.synthesize("One.", None)
    pid = piper._driver.proc.pid
    short = piper.synthesize("Two words.", "en_US-joe-medium")
    assert piper._driver.proc.pid == pid  # the voice is loaded once, not per text
    assert 0.2 < duration(short) < 3
    piper._driver.proc.kill()
    piper._driver.proc.wait()
    again = piper.synthesize("I am back.", None)  # started again, the text tried again
    assert piper._driver.proc.pid != pid and duration(again) > 0.3


@needs_piper
def test_piper_serialises_concurrent_callers(piper):
    results, errors = {}, []

    def speak(i):
        try:
            results[i] = piper.synthesize(f"Sentence number {i}.", None)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=speak, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 4
    assert all(duration(a) > 0.5 for a in results.values())


def _speak_in_child(engine, conn):
    try:
        audio = engine.synthesize("Hello from the child.", None)
        conn.send((engine._driver.proc.pid, duration(audio)))
    except Exception as exc:  # noqa: BLE001
        conn.send(("error", repr(exc)))
    finally:
        conn.close()


@needs_piper
def test_piper_forked_child_starts_its_own_process(piper):
    piper.synthesize("Parent first.", None)
    parent_pid = piper._driver.proc.pid
    ctx = multiprocessing.get_context("fork")  # as Celery's prefork pool does
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_speak_in_child, args=(piper, sender))
    child.start()
    sender.close()
    assert receiver.poll(120), "the child did not answer"
    child_driver, seconds = receiver.recv()
    child.join(30)
    assert child_driver != "error", seconds
    assert child_driver != parent_pid and seconds > 0.5
    assert piper._driver.proc.pid == parent_pid  # the parent's process was left alone
    assert duration(piper.synthesize("Parent again.", None)) > 0.5


@needs_piper
def test_piper_refusals(piper):
    with pytest.raises(SpeechError, match="unknown voice"):
        piper.synthesize("Hello.", "alloy")
    empty = piper.synthesize("  \n", None)
    assert empty.pcm == b"" and empty.sample_rate == 22050
    assert piper.voices() == [{"id": "en_US-joe-medium", "name": "Joe (en-US, medium, Piper)", "language": "en-US"}]


def test_piper_missing_install_says_what_to_run(tmp_path):
    from worker.providers.speech.piper import PiperEngine
    engine = PiperEngine(voice_path=tmp_path / "v.onnx", python=tmp_path / "no-python")
    with pytest.raises(SpeechError, match="scripts/ensure-tts"):
        engine.synthesize("Hello.", None)


# --- espeak ------------------------------------------------------------------------------

@needs_espeak
def test_espeak_speaks_and_lists_english_voices():
    from worker.providers.speech.espeak import EspeakEngine
    engine = EspeakEngine()
    voices = engine.voices()
    ids = [v["id"] for v in voices]
    assert ids[0] == "en-us" and "en-gb" in ids
    assert all(v["language"].lower().startswith("en") and v["name"] for v in voices)
    audio = engine.synthesize(SENTENCE, None)
    assert_speech(audio, 22050, words=len(SENTENCE.split()))
    assert duration(engine.synthesize("Good morning.", "en-gb")) > 0.3
    # text starting like an option is spoken, not obeyed
    assert duration(engine.synthesize("-v hello", None)) > 0.3
    with pytest.raises(SpeechError):
        engine.synthesize("Hello.", "nosuchvoice")
    with pytest.raises(SpeechError):
        engine.synthesize("Hello.", "--help")


# --- fake services -----------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((self.path, dict(self.headers), body))
        if self.path == "/v1/audio/speech":
            return self._openai(body)
        if self.path == "/tts/response":
            return self._tutornet(body)
        self._answer(404, b"{}")

    def _openai(self, body: bytes):
        try:
            req = json.loads(body)
        except ValueError:
            return self._answer(400, b'{"error": {"message": "not JSON"}}')
        if self.headers.get("Authorization") != "Bearer sk-test":
            return self._answer(401, b'{"error": {"message": "bad key"}}')
        if not {"model", "input", "voice", "response_format"} <= req.keys() or not req["input"]:
            return self._answer(400, b'{"error": {"message": "missing field"}}')
        if req["voice"] not in ("alloy", "echo", "fable", "onyx", "nova", "shimmer"):
            return self._answer(400, b'{"error": {"message": "unknown voice"}}')
        if "overloaded" in req["input"]:
            return self._answer(503, b'{"error": {"message": "overloaded"}}')
        pcm = sine(0.08 * len(req["input"].split()), 24000)
        if req["response_format"] == "pcm":
            return self._answer(200, pcm, "audio/pcm")
        if req["response_format"] == "wav":
            return self._answer(200, to_wav(Audio(pcm, 24000)), "audio/wav")
        self._answer(400, b'{"error": {"message": "unsupported format"}}')

    def _tutornet(self, body: bytes):
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            return self._answer(422, b'{"detail": "form data expected"}')
        msg = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
        form = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            form[name] = (part.get_filename(), part.get_payload(decode=True))
        self.server.forms.append(form)
        text = (form.get("tts_text") or (None, b""))[1].decode()
        if not text:
            return self._answer(422, b'{"detail": "tts_text is required"}')
        if "crash" in text:
            return self._answer(500, b"internal error")
        # Raw PCM, streamed in chunks (no WAV header), as the gateway does.
        pcm = sine(0.5, 22050, freq=330)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(pcm), 4096):
            chunk = pcm[i:i + 4096]
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture(scope="module")
def service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.requests, server.forms = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}", server=server)
    server.shutdown()
    server.server_close()


def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


# --- openai ------------------------------------------------------------------------------

def test_openai_speech_pcm_and_wav(service):
    from worker.providers.speech.openai import OpenAISpeech
    engine = OpenAISpeech(base_url=service.url + "/v1/", api_key="sk-test", model="tts-1")
    audio = engine.synthesize("one two three four five", "nova")
    assert audio.sample_rate == 24000
    assert audio.pcm == sine(0.4, 24000)
    path, headers, body = service.server.requests[-1]
    assert path == "/v1/audio/speech" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"model": "tts-1", "input": "one two three four five", "voice": "nova",
                                "response_format": "pcm"}
    wav = OpenAISpeech(base_url=service.url + "/v1", api_key="sk-test", response_format="wav")
    got = wav.synthesize("one two three four five", None)
    assert got.sample_rate == 24000 and got.pcm == sine(0.4, 24000)
    assert json.loads(service.server.requests[-1][2])["voice"] == "alloy"
    assert [v["id"] for v in engine.voices()] == ["alloy", "echo", "fable", "onyx", "nova", "shimmer"]


def test_openai_errors_are_sorted(service):
    from worker.providers.speech.openai import OpenAISpeech
    engine = OpenAISpeech(base_url=service.url + "/v1", api_key="sk-test")
    with pytest.raises(SpeechError, match="400"):
        engine.synthesize("Hello.", "bogus-voice")
    with pytest.raises(SpeechError, match="401"):
        OpenAISpeech(base_url=service.url + "/v1", api_key="wrong").synthesize("Hello.", None)
    with pytest.raises(SpeechUnavailable, match="503"):
        engine.synthesize("We are overloaded.", None)
    with pytest.raises(SpeechUnavailable, match="cannot reach"):
        OpenAISpeech(base_url=down_url() + "/v1").synthesize("Hello.", None)
    with pytest.raises(SpeechError, match="TTS_BASE_URL"):
        OpenAISpeech(base_url="")


# --- tutornet ----------------------------------------------------------------------------

def test_tutornet_sends_the_form_and_wraps_raw_pcm(service, tmp_path):
    from worker.providers.speech.tutornet import TutorNetSpeech
    engine = TutorNetSpeech(base_url=service.url, prompt_text="", prompt_wav="")
    audio = engine.synthesize("Bonjour, je suis votre tuteur.", None)
    assert audio.sample_rate == 22050 and audio.pcm == sine(0.5, 22050, freq=330)
    assert service.server.forms[-1] == {"tts_text": (None, b"Bonjour, je suis votre tuteur.")}
    rate, seconds, rms = read_wav(to_wav(audio))
    assert rate == 22050 and abs(seconds - 0.5) < 0.01 and rms > 5000
    assert [v["id"] for v in engine.voices()] == ["default"]

    prompt = tmp_path / "teacher.wav"
    prompt.write_bytes(to_wav(Audio(sine(0.3, 16000), 16000)))
    clone = TutorNetSpeech(base_url=service.url, prompt_text="This is my voice.", prompt_wav=str(prompt),
                        sample_rate=24000)
    got = clone.synthesize("Hello.", None)
    assert got.sample_rate == 24000  # the configured rate: raw PCM carries none
    form = service.server.forms[-1]
    assert form["tts_text"] == (None, b"Hello.") and form["prompt_text"] == (None, b"This is my voice.")
    assert form["prompt_wav"] == ("teacher.wav", prompt.read_bytes())
    clone.synthesize("Hello.", "default")
    assert set(service.server.forms[-1]) == {"tts_text"}
    assert [v["id"] for v in clone.voices()] == ["clone", "default"]


def test_tutornet_errors_are_sorted(service, tmp_path):
    from worker.providers.speech.tutornet import TutorNetSpeech
    engine = TutorNetSpeech(base_url=service.url, prompt_text="", prompt_wav="")
    with pytest.raises(SpeechUnavailable, match="cannot reach"):
        TutorNetSpeech(base_url=down_url(), prompt_wav="").synthesize("Hello.", None)
    with pytest.raises(SpeechUnavailable, match="500"):
        engine.synthesize("Please crash.", None)
    with pytest.raises(SpeechError, match="404"):
        TutorNetSpeech(base_url=service.url + "/nowhere", prompt_wav="").synthesize("Hello.", None)
    with pytest.raises(SpeechError, match="unknown voice"):
        engine.synthesize("Hello.", "clone")  # no prompt configured
    missing = TutorNetSpeech(base_url=service.url, prompt_text="x", prompt_wav=str(tmp_path / "gone.wav"))
    with pytest.raises(SpeechError, match="TTS_PROMPT_WAV"):
        missing.synthesize("Hello.", None)


# --- get_engine ----------------------------------------------------------------------------

def test_get_engine_follows_tts_engine(monkeypatch, service):
    import worker.providers.speech as tts
    values = {"TTS_ENGINE": "tutornet", "TTS_BASE_URL": service.url}
    monkeypatch.setattr(speech_base, "get_settings", lambda: SimpleNamespace(**values))
    monkeypatch.setattr(tts, "_cache", {})
    engine = tts.get_engine()
    assert engine.name == "tutornet" and tts.get_engine() is engine
    values["TTS_ENGINE"] = "openai"
    assert tts.get_engine().name == "openai"
    values["TTS_ENGINE"] = "festival"
    with pytest.raises(SpeechError, match="unknown TTS_ENGINE"):
        tts.get_engine()
    values.clear()  # nothing set: the default
    local = tts.get_engine()
    assert local.name == "local" and local.voices()[0]["id"] == "en_US-joe-medium"


# --- audio helpers -----------------------------------------------------------------------

def test_wav_round_trip_concat_and_duration():
    a = Audio(sine(0.5, 16000), 16000)
    assert duration(a) == 0.5
    assert from_wav(to_wav(a)) == a
    joined = concat([a, a, a])
    assert joined.sample_rate == 16000 and duration(joined) == pytest.approx(1.5 + 2 * 0.15)
    assert joined.pcm[len(a.pcm):len(a.pcm) + 2 * 2400] == bytes(2 * 2400)  # 150 ms of silence
    with pytest.raises(ValueError):
        concat([a, Audio(sine(0.1, 22050), 22050)])
    # a streamed WAV header (espeak-ng --stdout): sizes of 0x7ffff000, data to the end
    wav = bytearray(to_wav(a))
    wav[4:8] = wav[40:44] = (0x7FFFF000).to_bytes(4, "little")
    assert from_wav(bytes(wav)) == a
    # stereo 8-bit is mixed down to 16-bit mono
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2), w.setsampwidth(1), w.setframerate(8000)
        w.writeframes(bytes([128, 128, 255, 255, 0, 0]))
    assert array("h", from_wav(buf.getvalue()).pcm).tolist() == [0, 127 << 8, -128 << 8]
    with pytest.raises(SpeechError):
        from_wav(b"not a wav file at all")


@needs_sox
@pytest.mark.parametrize("fmt,ctype,kind", [("ogg", "audio/ogg", "vorbis"), ("mp3", "audio/mpeg", "mp3")])
def test_ogg_and_mp3_read_back_with_the_right_duration(tmp_path, fmt, ctype, kind):
    audio = concat([Audio(sine(1.0, 22050), 22050), Audio(sine(0.85, 22050, 660), 22050)])  # 2.0 s
    data, content_type = to_format(audio, fmt)
    assert content_type == ctype and len(data) > 1000
    path = tmp_path / f"speech.{fmt}"
    path.write_bytes(data)
    seconds = float(subprocess.run(["soxi", "-D", str(path)], capture_output=True, text=True, check=True).stdout)
    assert seconds == pytest.approx(2.0, abs=0.1)  # mp3 adds encoder padding of a few ms
    assert subprocess.run(["soxi", "-t", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip() == kind
    assert to_format(audio, "wav") == (to_wav(audio), "audio/wav")
    with pytest.raises(ValueError):
        to_format(audio, "flac")


# --- text ----------------------------------------------------------------------------------

@pytest.mark.parametrize("markdown,spoken", [
    ("# Limits\n\nA **limit** is *where* a function __heads__ ~~goes~~.",
     "Limits. A limit is where a function heads goes."),
    ("See [the notes](https://example.com/a_(b)) and [chapter 2][ch2].\n\n[ch2]: https://example.com/2",
     "See the notes and chapter 2."),
    ("Here is a graph: ![plot of f](plot.png) and <https://example.com>.", "Here is a graph: and."),
    ("Speed is distance over time [1]. It is a rate [2, 3][4].", "Speed is distance over time. It is a rate."),
    ("Steps:\n- install Python\n* run it\n1. first\n2) second\n- [x] done",
     "Steps: install Python. run it. 1: first. 2: second. done."),
    ("| x | f(x) |\n|---|:---:|\n| 1 | 2 |", "x, f(x). 1, 2."),
    ("Try this:\n```python\nprint('hi')\n```\nThen call `len(xs)`.", "Try this: (code omitted). Then call len(xs)."),
    ("Before\n~~~\ncode\n~~~\nAfter", "Before. (code omitted). After."),
    ("Cut short:\n```\nwhile True:", "Cut short: (code omitted)."),
    ("> A quote\n\n---\n\nVisit https://example.com/x?y=1 now.", "A quote. Visit now."),
    ("snake_case_name stays, 2 * 3 * 4 too", "snake_case_name stays, 2 * 3 * 4 too."),
    ("Line one\nstill line one.\n\n\n  Two   spaces\there.", "Line one still line one. Two spaces here."),
    ("A<br>B <sup>2</sup><!-- hidden -->", "A B 2."),
    ("Footnote[^1] here.\n\n[^1]: the note", "Footnote here."),
    ("", ""),
])
def test_clean_for_speech(markdown, spoken):
    assert clean_for_speech(markdown) == spoken


def test_clean_for_speech_can_drop_code():
    assert clean_for_speech("A.\n```\nx = 1\n```\nB.", code="") == "A. B."


@pytest.mark.parametrize("text,sentences", [
    ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
    ("Dr. Smith met J. R. R. Tolkien, e.g. in Oxford. Then he left.",
     ["Dr. Smith met J. R. R. Tolkien, e.g. in Oxford.", "Then he left."]),
    ("Pi is 3.14 and e is 2.72. Wait...  really?", ["Pi is 3.14 and e is 2.72.", "Wait...", "really?"]),
    ('He said "stop." Then silence.', ['He said "stop."', "Then silence."]),
    ("A heading\nA line without a stop", ["A heading", "A line without a stop"]),
    ("你好。我是老师！", ["你好。", "我是老师！"]),
    ("   \n\n", []),
])
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_split_sentences_cuts_long_ones_at_clauses_then_words():
    long = "First part of a long sentence, " * 5 + "and the end."
    pieces = split_sentences(long, max_chars=80)
    assert all(len(p) <= 80 for p in pieces) and all(p.endswith(",") for p in pieces[:-1])
    assert " ".join(pieces) == long.strip()
    words = " ".join(["word"] * 100)
    pieces = split_sentences(words, max_chars=50)
    assert all(len(p) <= 50 for p in pieces) and " ".join(pieces) == words
    assert split_sentences("x" * 120, max_chars=50) == ["x" * 50, "x" * 50, "x" * 20]
