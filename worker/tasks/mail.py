"""The mail queue: render a template and send it over SMTP, once per job.

The Message-ID is derived from the job id, so a retry or a re-run after a crash carries the
same id and a receiving server (or a person) can tell a duplicate. The one window where a
mail can go out twice: the SMTP server accepted the message but the worker died before it
recorded success; the re-run sends it again with the same Message-ID.
"""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.payloads import MailPayload
from shared.settings import get_settings
from worker.providers.mail import PermanentMailError, TransientMailError, get_provider
from worker.tasks.base import job_task
from worker.tasks.context import JobContext, JobFailed, Transient

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "mail"
SUBJECTS = {
    "code_register": "Your sign-up code",
    "code_reset_password": "Your password reset code",
    "code_delete_account": "Your account deletion code",
    "account_exists": "You already have an account",
    "no_account": "About your request",
}
_env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                   autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False))


def message_id(job_id: str) -> str:
    """Return the job's Message-ID, `<job-<id>@<sender's domain>>`: the same on every attempt."""
    sender = get_settings().MAIL_DEFAULT_SENDER
    domain = sender.rsplit("@", 1)[-1].strip(" >") or "mentor.local"
    return f"<job-{job_id}@{domain}>"


def build_message(job_id: str, to: str, template: str, context: dict) -> EmailMessage:
    """Build the text and HTML mail from a template; JobFailed if the template is unknown."""
    if template not in SUBJECTS:
        raise JobFailed("unknown_template", f"no mail template named {template!r}")
    msg = EmailMessage()
    msg["Subject"] = SUBJECTS[template]
    msg["From"] = get_settings().MAIL_DEFAULT_SENDER
    msg["To"] = to
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id(job_id)
    msg.set_content(_env.get_template(f"{template}.txt").render(**context))
    msg.add_alternative(_env.get_template(f"{template}.html").render(**context), subtype="html")
    return msg


@job_task("mail.send", max_retries=get_settings().MAIL_MAX_RETRIES)
def send_mail(ctx: JobContext) -> dict:
    """Send the payload's mail (the code is dropped from the stored payload); return its Message-ID."""
    p: MailPayload = ctx.payload
    msg = build_message(ctx.job_id, p.to, p.template, p.context)
    # The code is needed only to build the message: keep no copy of it once the job ends.
    ctx.new_payload = p.model_copy(update={"context": {k: v for k, v in p.context.items() if k != "code"}})
    ctx.emit("progress", {"progress": 0.5, "stage": "sending"})
    try:
        get_provider().send(msg)
    except TransientMailError as exc:
        raise Transient(str(exc)) from exc
    except PermanentMailError as exc:
        raise JobFailed("mail_rejected", str(exc)) from exc
    # Nothing about which template went out: that would tell an anonymous caller whether the address has an account.
    return {"message_id": msg["Message-ID"]}
