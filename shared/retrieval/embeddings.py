"""The static embedding model (model2vec, distilled from all-MiniLM-L6-v2; see embedding_model/).

Loaded once per process, offline. Vectors are L2-normalised float32 in memory and stored as
float16 bytes in the database.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

MODEL_DIR = Path(__file__).resolve().parent / "embedding_model"
_model = None
_lock = threading.Lock()


def model():
    """The static embedding model, loaded once per process (offline)."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from model2vec import StaticModel
                _model = StaticModel.from_pretrained(str(MODEL_DIR))
    return _model


def encode(texts: list[str]) -> np.ndarray:
    """The L2-normalised float32 embeddings of the texts, one row each."""
    vectors = np.asarray(model().encode(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-9)


def to_bytes(vector: np.ndarray) -> bytes:
    """A vector as the float16 bytes the database stores."""
    return vector.astype(np.float16).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    """A stored float16 vector as float32."""
    return np.frombuffer(blob, dtype=np.float16).astype(np.float32)
