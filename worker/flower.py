"""Flower for this app: `python -m worker.flower --port=5555 --basic-auth=user:password ...`.

The arguments are Flower's own (`celery -A worker.celery_app flower ...`). One fix first:
with --basic-auth, Flower's pages answer 401 with `WWW-Authenticate: Basic`, so a browser asks
for the credentials, but its /api/* handlers answer 401 without it (flower 2.2). They get the
same header here.
"""
from __future__ import annotations

import sys

REALM = 'Basic realm="flower"'


def ask_for_basic_auth_on_api_401() -> None:
    from flower.api import BaseApiHandler

    original = BaseApiHandler.write_error
    if getattr(original, "asks_for_basic_auth", False):
        return

    def write_error(self, status_code, **kwargs):
        if status_code == 401 and self.application.options.basic_auth and not self._headers.get("WWW-Authenticate"):
            self.set_header("WWW-Authenticate", REALM)
        return original(self, status_code, **kwargs)

    write_error.asks_for_basic_auth = True
    BaseApiHandler.write_error = write_error


def main(argv: list[str] | None = None) -> None:
    ask_for_basic_auth_on_api_401()
    from celery.bin.celery import main as celery_main
    sys.argv = ["celery", "-A", "worker.celery_app", "flower", *(sys.argv[1:] if argv is None else argv)]
    sys.exit(celery_main())


if __name__ == "__main__":
    main()
