"""llama.cpp in this process (llama-cpp-python): the default, with no other service.

The model is loaded once per worker process, on first use, and serves one generation at a
time (a lock), since the CPU is the limit.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from shared.settings import get_settings
from worker.providers.llm.base import ChatMessage, LLMError
from worker.providers.model_files import smollm2_path

_lock = threading.Lock()
_model = None


def load():
    """Return the process's llama.cpp model, loaded on first use; LLMError if the library or model is missing."""
    global _model
    if _model is None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LLMError("llama-cpp-python is not installed: run scripts/ensure-llm (make run does)") from exc
        s = get_settings()
        path = Path(s.LLM_MODEL_PATH) if s.LLM_MODEL_PATH else smollm2_path()
        if not path or not path.is_file():
            raise LLMError(f"no model file at {path}: set LLM_MODEL_PATH or run scripts/ensure-llm")
        _model = Llama(model_path=str(path), n_ctx=2048, n_threads=s.LLM_THREADS, verbose=False)
    return _model


class LocalLlama:
    """The llama.cpp model in this process, one generation at a time."""
    name = "local"

    def stream(self, messages: list[ChatMessage], *, max_tokens: int, temperature: float,
               user_id: str, session_id: str) -> Iterator[str]:
        """Yield the model's reply deltas, holding the process's lock for the whole generation."""
        with _lock:
            model = load()
            chunks = model.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                  temperature=temperature, stream=True)
            try:
                for chunk in chunks:
                    delta = chunk["choices"][0]["delta"].get("content")
                    if delta:
                        yield delta
            finally:
                chunks.close()
