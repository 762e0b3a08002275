"""Mail delivery behind a small interface; SMTP is the implementation.

Errors are sorted into transient (retry with backoff) and permanent (fail the job).
"""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Protocol

from shared.settings import get_settings


class TransientMailError(Exception):
    """Try again later: connection trouble or a 4xx reply."""


class PermanentMailError(Exception):
    """Do not retry: a 5xx reply, bad credentials, a refused recipient."""


class MailProvider(Protocol):
    """What a mail provider offers: send a message, raising TransientMailError or PermanentMailError."""
    def send(self, msg: EmailMessage) -> None:
        """Deliver the message, or raise TransientMailError (retry) or PermanentMailError (give up)."""


class SMTPProvider:
    """Mail over SMTP to MAIL_SERVER, with SSL or STARTTLS and a login when settings ask for them."""
    def __init__(self) -> None:
        self.s = get_settings()

    def _connect(self) -> smtplib.SMTP:
        s = self.s
        if s.MAIL_USE_SSL:
            return smtplib.SMTP_SSL(s.MAIL_SERVER, s.MAIL_PORT, timeout=s.MAIL_TIMEOUT,
                                    context=ssl.create_default_context())
        conn = smtplib.SMTP(s.MAIL_SERVER, s.MAIL_PORT, timeout=s.MAIL_TIMEOUT)
        if s.MAIL_USE_TLS:
            conn.starttls(context=ssl.create_default_context())
        return conn

    def send(self, msg: EmailMessage) -> None:
        """Send over a new SMTP connection; 4xx replies and connection errors are transient, the rest permanent."""
        try:
            with self._connect() as conn:
                if self.s.MAIL_USERNAME:
                    conn.login(self.s.MAIL_USERNAME, self.s.MAIL_PASSWORD)
                refused = conn.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentMailError(f"SMTP authentication failed: {exc.smtp_code}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(400 <= c < 500 for c in codes):
                raise TransientMailError(f"recipient deferred: {codes}") from exc
            raise PermanentMailError(f"recipient refused: {codes}") from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientMailError(f"SMTP {exc.smtp_code}") from exc
            raise PermanentMailError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
            raise TransientMailError(f"SMTP connection failed: {exc}") from exc
        if refused:
            raise PermanentMailError(f"recipients refused: {sorted(refused)}")


def get_provider() -> MailProvider:
    """Return the mail provider (SMTP)."""
    return SMTPProvider()
