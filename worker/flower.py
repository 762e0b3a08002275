"""Flower for this app: `FLOWER_BASIC_AUTH=user:password python -m worker.flower --port=5555 ...`.

The arguments are Flower's own (`celery -A worker.celery_app flower ...`); Flower reads
FLOWER_* variables from its environment itself, and the credentials are taken from there
only: on a command line (`--basic-auth=`) anyone on the host could read them in `ps`, so it
is refused, and so is starting with no credentials. Flower 2.2 asks for them only on its
pages and API: /metrics, /healthcheck, /static and its 404 page answer anyone. Here every
handler asks first, with `401` and `WWW-Authenticate: Basic` (so a browser prompts).
"""
from __future__ import annotations

import base64
import binascii
import hmac
import os
import sys

REALM = 'Basic realm="flower"'


def _authorised(handler) -> bool:
    scheme, _, encoded = handler.request.headers.get("Authorization", "").partition(" ")
    if scheme != "Basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return any(hmac.compare_digest(given.encode(), allowed.encode())
               for allowed in handler.application.options.basic_auth or ())


def _gated(handler_class):
    """`handler_class` answering 401 before anything else unless the request carries the credentials."""
    if getattr(handler_class, "asks_for_credentials", False):
        return handler_class

    class Gated(handler_class):
        asks_for_credentials = True

        def prepare(self):
            if not _authorised(self):
                self.set_status(401)
                self.set_header("WWW-Authenticate", REALM)
                self.finish("Access denied")
                return None
            return super().prepare()

    Gated.__name__ = Gated.__qualname__ = f"Gated{handler_class.__name__}"
    return Gated


def require_credentials_on_every_path() -> None:
    """Put the credential check in front of every one of Flower's handlers (before its app is made)."""
    from flower import urls
    from tornado.web import StaticFileHandler, URLSpec
    for i, spec in enumerate(urls.handlers):
        if isinstance(spec, URLSpec):
            spec.handler_class = _gated(spec.handler_class)
        else:
            urls.handlers[i] = (spec[0], _gated(spec[1]), *spec[2:])
    urls.settings["static_handler_class"] = _gated(StaticFileHandler)  # tornado's own /static/ route


def main(argv: list[str] | None = None) -> None:
    """Start Flower with the credentials from FLOWER_BASIC_AUTH, required on every path."""
    args = sys.argv[1:] if argv is None else argv
    if any(a.startswith(("--basic-auth", "--basic_auth")) for a in args):
        sys.exit("worker.flower: pass the credentials in FLOWER_BASIC_AUTH, not on the command line "
                 "(where `ps` shows them)")
    user, _, password = os.environ.get("FLOWER_BASIC_AUTH", "").partition(":")
    if not user or not password:
        sys.exit("worker.flower: FLOWER_BASIC_AUTH (user:password) is required")
    require_credentials_on_every_path()
    from celery.bin.celery import main as celery_main
    sys.argv = ["celery", "-A", "worker.celery_app", "flower", *args]
    sys.exit(celery_main())


if __name__ == "__main__":
    main()
