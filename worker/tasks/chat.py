"""The llm queue: generate a chat reply, streaming each token as an event.

The reply is written to the database when it ends (complete, cancelled or failed); while
it streams, its text lives in the job's event stream in Redis, where the history reads it:
no database write per token. A re-run (after a crash) starts the reply over; its stream
says `restarted` first. Connection failures before the first token are retried; after it, the reply keeps
what was generated and the job fails.
"""
from __future__ import annotations

import logging

from sqlalchemy import bindparam, or_, select, update

from shared.database import db, utcnow, write_tx
from shared.jobs import CANCEL_ERROR, JobLimitExceeded, dispatch, new_job, stream
from shared.models import Conversation, File, FileScope, FileStatus, Message, MessageStatus
from shared.payloads import ChatPayload, SpeechPayload
from shared.redis_client import get_redis
from shared.retrieval import get_retriever
from shared.settings import get_settings
from shared.signing import job_binding, job_urls
from worker.prompting import build_messages, read_turn
from worker.providers.llm import LLMError, LLMUnavailable, get_provider
from worker.tasks.base import job_task
from worker.tasks.context import Cancelled, JobContext, JobFailed, Transient

log = logging.getLogger(__name__)
FILES = File.__table__
# Built once: does the user see any ready file (retrieval is on by default then)?
_READY_FILE = select(FILES.c.id).where(
    or_(FILES.c.user_id == bindparam("user_id"), FILES.c.scope == FileScope.public.value),
    FILES.c.status == FileStatus.ready.value).limit(1)
# The reply's end, and its conversation's new activity time.
_COMPLETE = update(Message.__table__).where(Message.__table__.c.id == bindparam("reply_id")).values(
    content=bindparam("content"), status=MessageStatus.complete.value, updated_at=bindparam("now"))
_TOUCH = update(Conversation.__table__).where(Conversation.__table__.c.id == bindparam("conversation_id")).values(
    updated_at=bindparam("now"))


def _save(message_id: str, content: str, status: str, **extra) -> None:
    with write_tx():
        db.session.execute(update(Message).where(Message.id == message_id).values(
            content=content, status=status, updated_at=utcnow(), **extra))


def _retrieve(user_id: str | None, question: str, wanted: bool | None) -> tuple[str | None, list[dict] | None]:
    """The top chunks for the prompt and their citations, when retrieval is on (options.use_knowledge).

    On by default when the user can see ready files; a retrieval failure answers without it.
    """
    if not user_id or wanted is False:
        return None, None
    if wanted is None and db.session.connection().execute(_READY_FILE, {"user_id": user_id}).first() is None:
        return None, None
    try:
        hits = get_retriever().search(user_id, question, get_settings().KNOWLEDGE_TOP_K)
    except Exception:  # noqa: BLE001 - the answer goes on without the material
        log.warning("retrieval failed; answering without course material", exc_info=True)
        return None, None
    if not hits:
        return None, None
    context = "\n\n".join(f"[{i}] {h.file_name}" + (f", page {h.page}" if h.page else "") + f":\n{h.text}"
                           for i, h in enumerate(hits, start=1))
    citations = [{"n": i, "file_id": h.file_id, "file_name": h.file_name, "page": h.page,
                  "snippet": h.text[:240], "score": h.score} for i, h in enumerate(hits, start=1)]
    return context, citations


def _reply_failed(ctx: JobContext, error: dict) -> None:
    """A reply still marked streaming when its job fails (or is cancelled, and its worker died)
    keeps what it streamed and says failed (or cancelled)."""
    status = MessageStatus.cancelled if error.get("code") == CANCEL_ERROR["code"] else MessageStatus.failed
    try:
        streamed = stream.streamed_text(get_redis(), ctx.job_id)
    except Exception:  # noqa: BLE001 - Redis gone too: the reply is marked failed without its text
        log.warning("could not read the streamed text of job %s", ctx.job_id, exc_info=True)
        streamed = ""
    db.session.execute(update(Message).where(Message.id == ctx.payload.reply_message_id,
                                             Message.status == MessageStatus.streaming.value)
                       .values(status=status.value, content=streamed))


def _start_speech(ctx: JobContext, reply_id: str) -> None:
    """Queue the speech job that follows this reply, and announce it on the reply's stream.

    The speech job belongs to the reply's sign-in session; its URLs are signed for it.
    """
    binding = job_binding(ctx.job_id)
    try:
        with write_tx():
            job = new_job("speech", ctx.user_id, SpeechPayload(message_id=reply_id, chat_job_id=ctx.job_id,
                                                               format=get_settings().TTS_DEFAULT_FORMAT,
                                                               voice=get_settings().TTS_VOICE or None),
                          session_id=binding.session if binding is not None else None)
            message = db.session.get(Message, reply_id)
            message.meta = {**(message.meta or {}), "speech_job_id": job.id}
    except JobLimitExceeded:
        log.warning("speech for reply %s skipped: too many speech jobs", reply_id)
        return
    dispatch(job)
    ctx.emit("speech", {"job_id": job.id, **job_urls(job.id, binding)})


@job_task("llm.chat_reply", max_retries=get_settings().LLM_CONNECT_RETRIES, on_fail=_reply_failed)
def chat_reply(ctx: JobContext) -> dict:
    """Generate the reply from the provider, streaming each token; store it complete, cancelled or failed."""
    s = get_settings()
    p: ChatPayload = ctx.payload
    turn = read_turn(p.conversation_id, p.user_message_id, p.reply_message_id)
    if turn is None:
        raise JobFailed("conversation_gone", "the conversation was deleted")
    question, reply, history = turn
    context, citations = _retrieve(ctx.user_id, question.content, p.options.use_knowledge)
    messages = build_messages(history, context)
    reply_id, created_at = reply.id, reply.created_at
    db.session.commit()  # end the read transaction before the long generation
    if ctx.attempt > 1 or citations:  # a re-run starts the reply over; citations go on it now
        _save(reply_id, "", MessageStatus.streaming.value, citations=citations)
    if citations:
        ctx.emit("citations", {"citations": citations})
    if p.options.tts:
        _start_speech(ctx, reply_id)

    parts: list[str] = []
    try:
        for delta in get_provider().stream(messages, max_tokens=s.LLM_MAX_TOKENS, temperature=s.LLM_TEMPERATURE,
                                           user_id=ctx.user_id or "", session_id=p.conversation_id):
            parts.append(delta)
            ctx.token(delta)  # raises Cancelled once the job is cancelled (checked with each token)
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
    content, now = "".join(parts), utcnow()
    with write_tx():
        conn = db.session.connection()
        conn.execute(_COMPLETE, {"reply_id": reply_id, "content": content, "now": now})
        conn.execute(_TOUCH, {"conversation_id": p.conversation_id, "now": now})
    return {"message": {"id": reply_id, "conversation_id": p.conversation_id, "role": "assistant",
                        "content": content, "status": MessageStatus.complete.value, "citations": citations,
                        "created_at": created_at.isoformat() + "Z"}}
