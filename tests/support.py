"""Helpers for the tests: ports, waiting, a scriptable SMTP server, signing up users."""
from __future__ import annotations

import email
import email.policy
import json
import re
import threading
import uuid

from aiosmtpd.controller import Controller

from devtools.stack import free_port, wait_until  # noqa: F401 - re-exported for the tests


class SMTPSink:
    """A real SMTP server that keeps what it accepts; `replies` scripts answers per recipient."""

    def __init__(self, port: int):
        self.port = port
        self.messages: list[email.message.EmailMessage] = []
        self.replies: dict[str, list[str]] = {}  # recipient -> queued SMTP replies for DATA
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    def start(self):
        self.controller.start()

    def stop(self):
        self.controller.stop()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                queued = self.replies.get(rcpt)
                if queued:
                    return queued.pop(0)
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append(msg)
        return "250 OK"

    def to(self, address: str) -> list:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def wait_for(self, address: str, count: int = 1, timeout: float = 20.0) -> list:
        return wait_until(lambda: (lambda found: found if len(found) >= count else None)(self.to(address)),
                          timeout=timeout, what=f"{count} mail(s) to {address}")


def code_from(message) -> str:
    match = re.search(r"\b(\d{6})\b", message.get_body(preferencelist=("plain",)).get_content())
    assert match, "no 6-digit code in the mail"
    return match.group(1)


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def request_code(client, smtp, address: str, purpose: str, nth: int = 1) -> str:
    r = client.post("/api/auth/send-code", json={"email": address, "purpose": purpose})
    assert r.status_code == 202, r.get_json()
    return code_from(smtp.wait_for(address, count=nth)[-1])


def sign_up(client, smtp, password: str = "correct horse battery", username: str | None = None) -> dict:
    address = new_email()
    code = request_code(client, smtp, address, "register")
    body = {"email": address, "password": password, "code": code}
    if username:
        body["username"] = username
    r = client.post("/api/auth/register", json=body)
    assert r.status_code == 201, r.get_json()
    user_id = r.get_json()["id"]
    r = client.post("/api/auth/login", json={"email": address, "password": password})
    assert r.status_code == 200, r.get_json()
    return {"email": address, "password": password, "id": user_id, **r.get_json()}


def job_state(client, job_id, token):
    return client.get(f"/api/jobs/{job_id}", headers=bearer(token)).get_json()


def wait_for_state(client, job_id, token, states=("succeeded", "failed", "cancelled"), timeout=30):
    return wait_until(lambda: (lambda j: j if j.get("state") in states else None)(job_state(client, job_id, token)),
                      timeout=timeout, what=f"job {job_id} to reach {states}")


def parse_sse(text: str) -> list[dict]:
    out = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            k, _, v = line.partition(":")
            fields[k] = v.lstrip(" ")
        if "event" in fields:
            out.append({"id": fields.get("id"), "event": fields["event"], "data": json.loads(fields["data"])})
    return out
