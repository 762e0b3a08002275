"""Operations: `make run` starts the dev mail sink only without MAIL_SERVER; Flower asks for its
credentials on every path and takes them from the environment; gunicorn's own error answers
(before the app sees a request) are in the API's JSON error shape."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
FLOWER_USER, FLOWER_PASSWORD = "ops", "a-long-flower-password-42"


# --- make run: the mail sink only when MAIL_SERVER is unset ---

def _make_run(folder: Path, dotenv: str, **env: str) -> list[str]:
    """The processes `make run` starts, from the real Makefile and Procfile.dev in `folder`, whose
    installers, migration and honcho are stand-ins (honcho prints the names it is given)."""
    if not folder.exists():
        (folder / "scripts").mkdir(parents=True)
        (folder / ".venv" / "bin").mkdir(parents=True)
        for name in ("Makefile", "Procfile.dev"):
            shutil.copy(ROOT / name, folder / name)
        for stub in ("scripts/ensure-llm", "scripts/ensure-tts", "scripts/ensure-redis", ".venv/bin/python",
                     ".venv/bin/flask"):
            (folder / stub).write_text("#!/bin/sh\nexit 0\n")
        (folder / ".venv/bin/honcho").write_text('#!/bin/sh\necho "honcho: $*"\n')
        for stub in folder.glob("**/*"):
            if stub.is_file() and stub.name not in ("Makefile", "Procfile.dev"):
                stub.chmod(0o755)
        (folder / ".venv/.installed").touch()
        (folder / ".venv/bin/dotenv").symlink_to(Path(sys.executable).parent / "dotenv")  # the real one
    (folder / ".env").write_text(dotenv)
    base = {k: v for k, v in os.environ.items() if k not in ("MAIL_SERVER", "REDIS_URL", "MAKEFLAGS")}
    out = subprocess.run(["make", "-s", "run"], check=False, cwd=folder, env={**base, **env}, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    started = [line for line in out.stdout.splitlines() if line.startswith("honcho: ")]
    assert len(started) == 1, out.stdout
    return started[0].split(" start ", 1)[1].split()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_starts_the_mail_sink_only_when_mail_server_is_unset(tmp_path):
    folder = tmp_path / "checkout"
    secrets = "FLOWER_BASIC_AUTH=admin:some-password\n"
    everything = _make_run(folder, secrets)
    assert everything[0] == "web"
    assert {"mailsink", "redis", "worker", "mail", "llm", "beat", "flower"} <= set(everything)
    assert "mailsink" not in _make_run(folder, secrets, MAIL_SERVER="smtp.example.com")  # from the environment
    in_dotenv = _make_run(folder, secrets + "# MAIL_SERVER=commented.example\nMAIL_SERVER=127.0.0.1\n")
    assert "mailsink" not in in_dotenv and "redis" in in_dotenv
    neither = _make_run(folder, secrets + "MAIL_SERVER=mail.local\nREDIS_URL=redis://10.0.0.1:6379/0\n")
    assert "mailsink" not in neither and "redis" not in neither
    assert "mailsink" in _make_run(folder, secrets + "MAIL_SERVER=\n")  # empty is unset, for make and the app
    from shared.settings import Settings
    assert Settings(MAIL_SERVER="").MAIL_SERVER == "127.0.0.1"  # the sink's address, on MAIL_PORT


# --- Flower ---

@pytest.fixture(scope="module")
def flower(redis_server, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("flower") / "flower.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}"}
    proc = subprocess.Popen([sys.executable, "-m", "worker.flower", "--address=127.0.0.1", f"--port={port}"],
                            env=env, cwd=str(log.parent), stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(base, timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False
    try:
        wait_until(up, timeout=60, what="flower to listen", proc=proc, log=log)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_flower_wants_its_credentials_on_every_path_and_keeps_them_off_its_command_line(flower):
    base, proc = flower
    paths = ("/", "/workers", "/tasks", "/broker", "/api/workers", "/api/tasks", "/api/task/types", "/metrics",
             "/healthcheck", "/static/css/flower.css", "/favicon.ico", "/no-such-page")
    for path in paths:
        r = requests.get(base + path, timeout=10)
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
        assert r.headers.get("WWW-Authenticate", "").startswith("Basic"), (path, dict(r.headers))
        assert requests.get(base + path, auth=(FLOWER_USER, "wrong password"), timeout=10).status_code == 401
        assert requests.get(base + path, auth=("admin", FLOWER_PASSWORD), timeout=10).status_code == 401
    for path in ("/", "/api/workers", "/metrics", "/healthcheck", "/static/css/flower.css"):
        r = requests.get(base + path, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10)
        assert r.status_code == 200, (path, r.status_code)
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    assert b"worker.flower" in cmdline and FLOWER_PASSWORD.encode() not in cmdline


def test_flower_refuses_credentials_on_its_command_line_and_a_start_without_them():
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    env["PYTHONPATH"] = str(ROOT)
    for args, extra in ((["--basic-auth=user:password123456"], {"FLOWER_BASIC_AUTH": "user:password123456"}),
                        ([], {}), ([], {"FLOWER_BASIC_AUTH": "user-without-password"})):
        out = subprocess.run([sys.executable, "-m", "worker.flower", "--port=1", *args], check=False,
                             env={**env, **extra}, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "FLOWER_BASIC_AUTH" in out.stderr, (args, out.stderr[-500:])


# --- gunicorn's own answers ---

def _raw(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are, read the answer until the server closes the connection."""
    url = urlparse(base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def test_gunicorns_own_error_answers_are_in_the_json_error_shape(live_server):
    host = b"Host: 127.0.0.1\r\n"
    cases = {
        "request line over the limit": (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n" + host + b"\r\n", 414),
        "too many headers": (b"GET / HTTP/1.1\r\n" + host + b"".join(b"X-H%d: v\r\n" % i for i in range(120))
                             + b"\r\n", 431),
        "a header too large": (b"GET / HTTP/1.1\r\n" + host + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        "a malformed request line": (b"NONSENSE\r\n\r\n", 400),
        "a bad method": (b"G(T / HTTP/1.1\r\n" + host + b"\r\n", 400),
        "a bad HTTP version": (b"GET / HTTP/7.3\r\n" + host + b"\r\n", 400),
    }
    for what, (request, status) in cases.items():
        got, headers, body = _raw(live_server, request)
        assert got == status, (what, got, body[:200])
        assert headers.get("content-type") == "application/json", (what, headers, body[:200])
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message", "details"} and error["code"] and error["message"], (what, error)
        # A fixed message: neither gunicorn's own text nor what the client sent comes back.
        assert not any(echo in error["message"] for echo in ("NONSENSE", "G(T", "HTTP/7.3", "aaaa", ">")), (what, error)
    assert _raw(live_server, b"GET /api/health HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")[0] == 200
