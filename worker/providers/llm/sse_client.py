"""Reading an HTTP Server-Sent Events response: yields each event's data string."""
from __future__ import annotations

from collections.abc import Iterator

import requests

from worker.providers.llm.base import LLMError, LLMUnavailable


def post_stream(url: str, *, json: dict, headers: dict, timeout: tuple[float, float]) -> requests.Response:
    """POST and return the open streaming response, sorting failures into retryable or not."""
    try:
        resp = requests.post(url, json=json, headers={"Accept": "text/event-stream", **headers},
                             stream=True, timeout=timeout)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise LLMUnavailable(f"cannot reach the LLM service: {type(exc).__name__}") from exc
    if resp.status_code >= 500 or resp.status_code == 429:
        resp.close()
        raise LLMUnavailable(f"the LLM service answered {resp.status_code}")
    if resp.status_code >= 400:
        body = resp.text[:300]
        resp.close()
        raise LLMError(f"the LLM service refused the request ({resp.status_code}): {body}")
    return resp


def iter_data(resp: requests.Response) -> Iterator[str]:
    """The `data:` payloads of an SSE body (multi-line data joined by newlines)."""
    data: list[str] = []
    try:
        for raw in resp.iter_lines(decode_unicode=True):
            if raw is None:
                continue
            line = raw.rstrip("\r")
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value[1:] if value.startswith(" ") else value)
        if data:
            yield "\n".join(data)
    except requests.RequestException as exc:
        raise LLMError(f"the LLM stream broke off: {type(exc).__name__}") from exc
    finally:
        resp.close()
