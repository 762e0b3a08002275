"""The development mail sink: an SMTP server (aiosmtpd) that keeps every message.

Each message is written to var/mail/<time>-<n>.eml and its text part is printed to the
honcho log, so a developer reads sign-up codes there. Run: python -m devtools.mailsink.
"""
from __future__ import annotations

import argparse
import email
import email.policy
import os
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller


class SinkHandler:
    def __init__(self, folder: Path):
        self.folder = folder
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        name = self.folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{n:05d}.eml"
        name.write_bytes(envelope.content)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        text = body.get_content().strip() if body else ""
        print(f"--- mail to {', '.join(envelope.rcpt_tos)}: {msg['Subject']} ({name})\n{text}\n---", flush=True)
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MAIL_PORT", "1025")))
    parser.add_argument("--dir", default=os.environ.get("MAIL_SINK_DIR", "var/mail"))
    args = parser.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(SinkHandler(folder), hostname=args.host, port=args.port)
    controller.start()
    print(f"mail sink on {args.host}:{args.port}, keeping messages in {folder.resolve()}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
