"""Piper (the `local` speech engine), run as a separate process: the default, with no other service.

piper-tts is GPL-3.0-or-later, so it is never imported here. scripts/ensure-tts installs it
into its own virtualenv (<cache>/piper-venv, or PIPER_PYTHON) and fetches the voice
(<cache>/voices/en_US-joe-medium.onnx, or TTS_VOICE_PATH). Each worker process starts one
long-lived `piper_driver.py` with that venv's python on first use (or `start()`): it loads the
voice once (about 1.5 s) and then speaks text after text over pipes (one JSON line in, a
JSON header and raw 16-bit PCM out; see piper_driver.py).

One synthesis at a time per process (a lock): the CPU is the limit, and onnxruntime uses
TTS_THREADS threads for each. A driver that dies is started again and the text tried once
more; one that hangs past TTS_READ_TIMEOUT is killed (SpeechUnavailable). A forked child (Celery
prefork) starts its own driver and leaves its parent's alone. The driver ends by itself when
its stdin closes, that is when the worker process ends.
"""
from __future__ import annotations

import atexit
import json
import os
import threading
import time
import weakref
from pathlib import Path

from worker.providers.model_files import cache_dir
from worker.providers.speech.base import Audio, SpeechError, SpeechUnavailable, setting
from worker.providers.speech.piper_process import DriverDied, DriverProcess, DriverTimeout

DEFAULT_VOICE = "en_US-joe-medium"
DRIVER = Path(__file__).with_name("piper_driver.py")
LOAD_TIMEOUT = 120.0  # seconds for the driver to load the voice (about 1.5 s when idle)

_engines: weakref.WeakSet[PiperEngine] = weakref.WeakSet()


def default_python() -> Path:
    """The piper venv's python that scripts/ensure-tts makes in the cache."""
    return cache_dir() / "piper-venv" / "bin" / "python"


def default_voice_path() -> Path:
    """The default voice's .onnx that scripts/ensure-tts unpacks in the cache."""
    return cache_dir() / "voices" / f"{DEFAULT_VOICE}.onnx"


class PiperEngine:
    """One Piper voice, spoken by a piper_driver.py process this engine starts and restarts."""
    name = "local"

    def __init__(self, voice_path: str | os.PathLike | None = None, python: str | os.PathLike | None = None,
                 threads: int | None = None, timeout: float | None = None):
        self.voice_path = Path(voice_path or setting("TTS_VOICE_PATH", "") or default_voice_path())
        self.python = Path(python or setting("PIPER_PYTHON", "") or default_python())
        self.threads = int(threads or setting("TTS_THREADS", 1))
        self.timeout = float(timeout or setting("TTS_READ_TIMEOUT", 60.0))
        self.voice_id = self.voice_path.name.removesuffix(".onnx")
        self.load_seconds: float | None = None  # of the running driver, as it reported
        self._driver: DriverProcess | None = None
        self._lock = threading.Lock()
        self._sample_rate: int | None = None
        _engines.add(self)

    # --- the interface -------------------------------------------------------------------

    def voices(self) -> list[dict]:
        # Piper voices are named LANG_REGION-NAME-QUALITY (en_US-joe-medium).
        """The one voice loaded, named from its file (LANG_REGION-NAME-QUALITY)."""
        parts = self.voice_id.split("-")
        if len(parts) == 3:
            language = parts[0].replace("_", "-")
            return [{"id": self.voice_id, "name": f"{parts[1].capitalize()} ({language}, {parts[2]}, Piper)",
                     "language": language}]
        return [{"id": self.voice_id, "name": self.voice_id, "language": ""}]

    def synthesize(self, text: str, voice: str | None = None) -> Audio:
        """The text spoken by the driver; a driver that died is restarted and tried once more."""
        if voice not in (None, "", self.voice_id):
            raise SpeechError(f"unknown voice {voice!r} for the local engine: {self.voice_id}")
        if not text.strip():
            return Audio(pcm=b"", sample_rate=self.sample_rate)
        request = json.dumps({"text": text}).encode() + b"\n"
        with self._lock:
            for attempt in (1, 2):
                driver = self._ensure()
                deadline = time.monotonic() + self.timeout
                try:
                    driver.send(request)
                    header = driver.read_header(deadline)
                    pcm = driver.read_bytes(int(header["bytes"]), deadline) if header.get("ok") else b""
                except DriverDied as exc:
                    self._stop(kill=True)
                    if attempt == 2:
                        raise SpeechUnavailable(f"piper stopped twice while speaking: {exc}") from exc
                    continue  # start it again and try once more
                except DriverTimeout as exc:
                    self._stop(kill=True)
                    raise SpeechUnavailable(f"piper took longer than {self.timeout:.0f} s") from exc
                except (KeyError, TypeError, ValueError) as exc:
                    self._stop(kill=True)
                    raise SpeechError(f"unexpected header from piper: {header!r}") from exc
                if not header.get("ok"):
                    raise SpeechError(f"piper could not speak this text: {header.get('error')}")
                return Audio(pcm=pcm, sample_rate=int(header["sample_rate"]))
        raise AssertionError("unreachable")

    # --- the process ---------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """The voice's rate, from its .onnx.json (read here: plain JSON, no piper code)."""
        if self._sample_rate is None:
            try:
                config = json.loads(Path(f"{self.voice_path}.json").read_text(encoding="utf-8"))
                self._sample_rate = int(config["audio"]["sample_rate"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise SpeechError(f"cannot read the voice config {self.voice_path}.json: {exc}; "
                               "run scripts/ensure-tts or set TTS_VOICE_PATH") from exc
        return self._sample_rate

    def start(self) -> float:
        """Start the driver now (e.g. when a worker process starts) rather than on the first
        text; returns the seconds the voice took to load."""
        with self._lock:
            self._ensure()
            return self.load_seconds or 0.0

    def close(self) -> None:
        """Stop the driver (it is started again on the next text)."""
        with self._lock:
            self._stop()

    def _ensure(self) -> DriverProcess:
        if self._driver is not None and self._driver.returncode() is None:
            return self._driver
        if self._driver is not None:
            self._stop()
        if not os.access(self.python, os.X_OK):
            raise SpeechError(f"no piper python at {self.python}: run scripts/ensure-tts or set PIPER_PYTHON")
        if not self.voice_path.is_file() or not Path(f"{self.voice_path}.json").is_file():
            raise SpeechError(f"no piper voice at {self.voice_path} (and .json): run scripts/ensure-tts "
                           "or set TTS_VOICE_PATH")
        # -I: isolated, so neither our package folder nor PYTHON* variables reach piper.
        driver = DriverProcess([str(self.python), "-I", str(DRIVER), "--model", str(self.voice_path),
                          "--threads", str(self.threads)])
        try:
            ready = driver.read_header(time.monotonic() + LOAD_TIMEOUT)
        except (DriverDied, DriverTimeout) as exc:
            tail = driver.stderr_tail()
            driver.stop(kill=True)
            if isinstance(exc, DriverTimeout):
                raise SpeechUnavailable(f"piper did not load the voice within {LOAD_TIMEOUT:.0f} s") from exc
            raise SpeechError(f"piper failed to start: {tail or exc}") from exc
        if not ready.get("ready"):
            driver.stop(kill=True)
            raise SpeechError(f"piper could not load {self.voice_path}: {ready.get('error')}")
        self._sample_rate = int(ready["sample_rate"])
        self.load_seconds = ready.get("load_seconds")
        self._driver = driver
        return driver

    def _stop(self, kill: bool = False) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.stop(kill=kill)


def _after_fork_in_child() -> None:
    # The parent's driver and lock are the parent's: start afresh, closing only our copies.
    for engine in list(_engines):
        driver, engine._driver = engine._driver, None
        engine._lock = threading.Lock()
        if driver is not None:
            for f in (driver.proc.stdin, driver.proc.stdout, driver.stderr):
                try:
                    f.close()
                except OSError:
                    pass


def _close_all() -> None:
    for engine in list(_engines):
        try:
            engine.close()
        except Exception:  # noqa: BLE001 -- interpreter shutdown: best effort
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
