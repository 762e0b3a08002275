"""Where the model files that scripts/ensure-llm fetched live (a per-machine cache)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Return the model cache folder: MENTOR_CACHE_DIR, else mentor-backend under XDG_CACHE_HOME or ~/.cache."""
    explicit = os.environ.get("MENTOR_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mentor-backend"


def smollm2_path() -> Path | None:
    """The SmolLM2 GGUF file in the cache, if scripts/ensure-llm put one there."""
    found = sorted((cache_dir() / "models").glob("*.gguf"))
    preferred = [p for p in found if "smollm2" in p.name.lower()]
    return (preferred or found or [None])[0]
