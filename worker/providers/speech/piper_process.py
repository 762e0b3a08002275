"""The pipes to one running piper_driver.py: send a JSON line, read a header line and raw PCM.

PiperEngine (piper.py) owns when a driver starts, stops and is tried again; this module
only talks to one process. A read past its deadline raises DriverTimeout; a process that
exited, closed its output or wrote something unreadable raises DriverDied. The driver's
stderr goes to a temporary file, whose tail goes into those errors.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
import time


class DriverDied(Exception):
    """The driver exited, closed its output or wrote something unreadable."""


class DriverTimeout(Exception):
    """The driver did not answer before the deadline."""


class DriverProcess:
    """One running piper_driver.py and the reading end of its stdout."""

    def __init__(self, cmd: list[str]):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     bufsize=0, cwd=tempfile.gettempdir())
        self.fd = self.proc.stdout.fileno()
        self.buf = bytearray()
        self.ready: dict = {}

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
            raise DriverTimeout()
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            raise DriverDied(f"piper exited ({self.returncode()}): {self.stderr_tail()}")
        self.buf += chunk

    def read_header(self, deadline: float) -> dict:
        """The next JSON line the driver writes, read before `deadline` (monotonic)."""
        while b"\n" not in self.buf:
            self._fill(deadline)
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        try:
            header = json.loads(line)
        except ValueError as exc:
            raise DriverDied(f"unreadable line from piper: {line[:120]!r}") from exc
        if not isinstance(header, dict):
            raise DriverDied(f"unexpected line from piper: {line[:120]!r}")
        return header

    def read_bytes(self, n: int, deadline: float) -> bytes:
        """The next n bytes the driver writes (the PCM after a header), before `deadline`."""
        while len(self.buf) < n:
            self._fill(deadline)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def send(self, line: bytes) -> None:
        """Write one request line to the driver's stdin."""
        try:
            self.proc.stdin.write(line)
        except (BrokenPipeError, OSError) as exc:
            raise DriverDied(f"piper is gone ({self.returncode()}): {self.stderr_tail()}") from exc

    def returncode(self):
        """The driver's exit status, or None while it runs."""
        return self.proc.poll()

    def stderr_tail(self) -> str:
        """The last 800 bytes the driver wrote to stderr, for error messages."""
        try:
            self.stderr.seek(0)
            return self.stderr.read()[-800:].decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def stop(self, kill: bool = False) -> None:
        """End the driver: close its stdin (it exits), or kill it; wait, then close our ends."""
        try:
            self.proc.stdin.close()  # the driver ends at end of input
        except OSError:
            pass
        if kill:
            self.proc.kill()
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(3)
        self.proc.stdout.close()
        self.stderr.close()
