"""Blob storage behind a small interface: uploads now, audio later.

Keys are made by the code (`files/<user>/<sha256>`), never from a user's file name. The
local folder (STORAGE_DIR) is the default; the interface is shaped for an S3-compatible
store (put a stream, open for reading, ranged reads, delete) so that workers on several
hosts can share blobs.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

from shared.settings import get_settings

_KEY = re.compile(r"^[a-z0-9]+(/[A-Za-z0-9_.-]+)+$")


class Storage(Protocol):
    """What a blob store offers; keys are made by the code, never from a user's file name."""

    def put(self, key: str, src: BinaryIO) -> None:
        """Store the stream's bytes under `key`, replacing any blob there."""

    def open(self, key: str) -> BinaryIO:
        """Open the blob for reading (FileNotFoundError if there is none)."""

    def size(self, key: str) -> int:
        """Return the blob's size in bytes."""

    def exists(self, key: str) -> bool:
        """Whether a blob is stored under `key`."""

    def delete(self, key: str) -> None:
        """Remove the blob; no error if there is none."""

    def local_path(self, key: str) -> Path | None:
        """Return the blob's path on this host's file system, or None if the store has none."""


class LocalStorage:
    """Blobs as files under a local folder; a key that is malformed or leaves the folder raises ValueError."""
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"bad storage key {key!r}")
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"bad storage key {key!r}")
        return path

    def put(self, key: str, src: BinaryIO) -> None:
        """Write atomically: a reader never sees half a blob."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1024 * 1024)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        """Open the file for binary reading."""
        return open(self._path(key), "rb")

    def size(self, key: str) -> int:
        """Return the file's size in bytes."""
        return self._path(key).stat().st_size

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the file, if it is there."""
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        """Return the file's path (whether or not it exists yet)."""
        return self._path(key)


_storage: Storage | None = None


def get_storage() -> Storage:
    """Return the process's blob store: LocalStorage in STORAGE_DIR."""
    global _storage
    if _storage is None:
        _storage = LocalStorage(get_settings().STORAGE_DIR)
    return _storage
