"""The speech engine interface, the audio it returns, and its two errors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shared.settings import get_settings


@dataclass
class Audio:
    """Speech as 16-bit signed little-endian mono PCM and its sample rate."""
    pcm: bytes  # 16-bit signed little-endian samples, mono
    sample_rate: int


class SpeechUnavailable(Exception):
    """The engine could not be reached, answered 5xx or timed out: worth a retry."""


class SpeechError(Exception):
    """The engine refused the text or voice, is not installed, or sent something unreadable: not worth a retry."""


class SpeechEngine(Protocol):
    """What every speech engine offers: its voices, and speaking a text in one of them."""
    name: str

    def voices(self) -> list[dict]:
        """The voices to offer: [{"id", "name", "language"}]; the first is the default."""
        ...

    def synthesize(self, text: str, voice: str | None) -> Audio:
        """Speak one sentence or a short text (split longer ones with text.split_sentences)."""
        ...


def setting(name: str, default: Any) -> Any:
    """A TTS setting from shared/settings.py, or `default` while it does not declare it."""
    value = getattr(get_settings(), name, default)
    return default if value is None else value


def post(url: str, *, timeout: tuple[float, float], what: str, **kwargs) -> bytes:
    """POST and return the whole body, sorting failures: unreachable, timeouts, 429 and 5xx
    are SpeechUnavailable; other 4xx are SpeechError."""
    import requests

    try:
        with requests.post(url, timeout=timeout, stream=True, **kwargs) as resp:
            if resp.status_code >= 500 or resp.status_code == 429:
                raise SpeechUnavailable(f"{what} answered {resp.status_code}")
            if resp.status_code >= 400:
                raise SpeechError(f"{what} refused the request ({resp.status_code}): {resp.text[:300]}")
            return b"".join(resp.iter_content(1 << 16))
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise SpeechUnavailable(f"cannot reach {what} (or it broke off): {type(exc).__name__}") from exc
    except requests.RequestException as exc:
        raise SpeechError(f"bad exchange with {what}: {type(exc).__name__}: {exc}") from exc
