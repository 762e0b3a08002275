"""Structured logging: every line carries the current request id (and job id in workers).

JSON lines in production (python-json-logger), readable text in development.
"""
from __future__ import annotations

import contextvars
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from shared.settings import get_settings

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
job_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="-")


class ContextFilter(logging.Filter):
    """A logging filter that stamps each record with the current request id and job id."""
    def filter(self, record: logging.LogRecord) -> bool:
        """Set record.request_id and record.job_id from the context; never drops a record."""
        record.request_id = request_id_var.get()
        record.job_id = job_id_var.get()
        return True


def configure_logging(service: str) -> None:
    """Send the root logger to stderr at LOG_LEVEL, as JSON lines (tagged with `service`) or text."""
    s = get_settings()
    use_json = s.LOG_JSON if s.LOG_JSON is not None else s.is_production
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(job_id)s",
            static_fields={"service": service}))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(name)s] [req=%(request_id)s job=%(job_id)s] %(message)s"))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(s.LOG_LEVEL.upper())
