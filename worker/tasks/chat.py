"""The llm queue: generate a chat reply, streaming each token as an event.

The partial text is saved every half second, so the history shows a reply while it
streams. A re-run (after a crash) starts the reply over; its stream says `restarted`
first. Connection failures before the first token are retried; after it, the reply keeps
what was generated and the job fails.
"""
from __future__ import annotations

import time

from sqlalchemy import update

from shared.database import db, utcnow, write_tx
from shared.models import Conversation, Message, MessageStatus
from shared.settings import get_settings
from worker.prompting import build_messages
from worker.providers.llm import LLMError, LLMUnavailable, get_provider
from worker.tasks.base import Cancelled, JobContext, JobFailed, Transient, job_task

FLUSH_EVERY = 0.5  # seconds between saves of the partial reply
CANCEL_CHECK_EVERY = 0.1


def _save(message_id: str, content: str, status: str) -> None:
    with write_tx():
        db.session.execute(update(Message).where(Message.id == message_id).values(
            content=content, status=status, updated_at=utcnow()))


def reply_out(m: Message) -> dict:
    return {"id": m.id, "conversation_id": m.conversation_id, "role": m.role, "content": m.content,
            "status": m.status, "citations": m.citations, "created_at": m.created_at.isoformat() + "Z"}


@job_task("llm.chat_reply", max_retries=get_settings().LLM_CONNECT_RETRIES)
def chat_reply(ctx: JobContext) -> dict:
    s = get_settings()
    p = ctx.payload
    question = db.session.get(Message, p["user_message_id"])
    reply = db.session.get(Message, p["reply_message_id"])
    if question is None or reply is None:
        raise JobFailed("conversation_gone", "the conversation was deleted")
    messages = build_messages(p["conversation_id"], question)
    reply_id = reply.id
    db.session.commit()  # end the read transaction before the long generation
    _save(reply_id, "", MessageStatus.streaming.value)

    parts: list[str] = []
    last_flush = last_check = time.monotonic()
    try:
        for delta in get_provider().stream(messages, max_tokens=s.LLM_MAX_TOKENS, temperature=s.LLM_TEMPERATURE,
                                           user_id=ctx.user_id or "", session_id=p["conversation_id"]):
            parts.append(delta)
            ctx.emit("token", {"delta": delta})
            now = time.monotonic()
            if now - last_check >= CANCEL_CHECK_EVERY:
                last_check = now
                ctx.check_cancelled()
            if now - last_flush >= FLUSH_EVERY:
                last_flush = now
                _save(reply_id, "".join(parts), MessageStatus.streaming.value)
    except Cancelled:
        _save(reply_id, "".join(parts), MessageStatus.cancelled.value)
        raise
    except LLMUnavailable as exc:
        if not parts:
            raise Transient(str(exc), code="llm_unavailable") from exc
        _save(reply_id, "".join(parts), MessageStatus.failed.value)
        raise JobFailed("llm_unavailable", f"the LLM service went away mid-reply: {exc}") from exc
    except LLMError as exc:
        _save(reply_id, "".join(parts), MessageStatus.failed.value)
        raise JobFailed("llm_error", str(exc)) from exc
    _save(reply_id, "".join(parts), MessageStatus.complete.value)
    with write_tx():
        db.session.execute(update(Conversation).where(Conversation.id == p["conversation_id"])
                           .values(updated_at=utcnow()))
    reply = db.session.get(Message, reply_id)
    db.session.refresh(reply)
    return {"message": reply_out(reply)}
