"""Who holds a running job: `host:pid` of the worker process, whether that process is gone, and
what a claim hands its holder."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

HOST = socket.gethostname()


def this_process() -> str:
    """The lease owner name of the calling process."""
    return f"{HOST}:{os.getpid()}"


def is_dead(owner: str | None) -> bool:
    """True when the lease holder was a process on this host that no longer exists (or this one)."""
    if not owner:
        return True
    host, _, pid = owner.rpartition(":")
    if host != HOST or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class Claimed:
    """A job its caller now holds (lease owner `lease_owner`)."""

    id: str
    kind: str
    user_id: str | None
    payload: dict[str, Any]
    attempts: int
    request_id: str | None
    lease_owner: str
