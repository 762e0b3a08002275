"""Chat: sending a message (with idempotency), history, conversations.

Sending writes the user message, an empty assistant reply (status streaming) and the job
in one transaction, then dispatches the job to the llm queue.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

from flask import g
from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from api.errors import APIError
from api.extensions.limiter import RateLimited, per_user
from api.security import url_binding
from api.services.identity import Caller
from api.services.jobs import caller_session, cancel, envelope
from shared.database import db, utcnow, write_tx
from shared.jobs import Created, dispatch, new_job, stream
from shared.models import Conversation, IdempotencyKey, Job, Message, MessageStatus
from shared.models.job import ACTIVE_STATES
from shared.models.user import new_id
from shared.payloads import ChatOptions, ChatPayload
from shared.redis_client import get_redis
from shared.settings import get_settings
from shared.signing import audio_url

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
SCOPE = "chat.send"


# Built once (the hot path binds only values), run on the session's connection: no ORM work.
_INSERT_CONVERSATION = insert(Conversation.__table__)
_TOUCH_CONVERSATION = update(Conversation.__table__).where(
    Conversation.__table__.c.id == bindparam("conversation_id")).values(updated_at=bindparam("now"))
_INSERT_MESSAGES = insert(Message.__table__)
_INSERT_KEY = insert(IdempotencyKey.__table__)


def _title_from(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= 60 else line[:57].rstrip() + "..."


def get_conversation(user: Caller, conversation_id: str) -> Conversation:
    """Return the caller's conversation; 404 if it does not exist or is another user's."""
    conv = db.session.get(Conversation, conversation_id) if len(conversation_id) <= 64 else None
    if conv is None or conv.user_id != user.id:
        raise APIError(404, "not_found", "no such conversation")
    return conv


def _request_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _replay(record: IdempotencyKey, request_hash: str) -> dict:
    if record.request_hash != request_hash:
        raise APIError(422, "idempotency_key_reused",
                       "this Idempotency-Key was already used with a different request body")
    stored = dict(record.response)
    return {**stored, **envelope(stored["job_id"])}


def _find_key(user_id: str, key: str) -> IdempotencyKey | None:
    return db.session.execute(select(IdempotencyKey).where(
        IdempotencyKey.user_id == user_id, IdempotencyKey.scope == SCOPE, IdempotencyKey.key == key)
    ).scalar_one_or_none()


def _expired(record: IdempotencyKey) -> bool:
    return record.created_at < utcnow() - timedelta(hours=get_settings().IDEMPOTENCY_TTL_HOURS)


def send(user: Caller, body: dict, idempotency_key: str | None) -> dict:
    """Store the message, an empty reply and its job, then queue it; a known Idempotency-Key replays the answer.

    The key is not looked up first: its unique constraint refuses a second insert, and only
    then is the first answer read (a replay is rare; a lookup on every send is not).
    """
    request_hash = _request_hash(body)
    if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
        raise APIError(400, "invalid_idempotency_key",
                       "Idempotency-Key must be 8-128 characters of letters, digits, _ . : -")
    try:
        per_user(get_settings().CHAT_RATE_LIMIT, "chat", user.id)
    except RateLimited:
        found = _find_key(user.id, idempotency_key) if idempotency_key else None
        if found is None or _expired(found):
            raise
        return _replay(found, request_hash)  # a replay queues nothing: answered past the limit too
    conversation_id = body.get("conversation_id")
    if conversation_id:
        get_conversation(user, conversation_id)
    for _ in range(2):
        try:
            answer, job = _store(user, body, conversation_id, idempotency_key, request_hash)
            break
        except IntegrityError:
            db.session.rollback()
            found = _find_key(user.id, idempotency_key) if idempotency_key else None
            if found is None:
                raise
            if not _expired(found):
                return _replay(found, request_hash)  # the key's first request (or a racing twin)
            with write_tx():  # past its time to live, not yet purged: the key is free again
                db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == found.id))
    else:
        raise APIError(409, "idempotency_conflict", "this Idempotency-Key is being used by another request")
    dispatch(job)
    return {**answer, **envelope(job.id)}


def _store(user: Caller, body: dict, conversation_id: str | None, idempotency_key: str | None,
           request_hash: str) -> tuple[dict, Created]:
    """In one transaction: the job, the conversation (new, or touched), both messages, the key."""
    with write_tx():
        now = utcnow()
        new_conversation = not conversation_id
        conversation_id = conversation_id or new_id()
        question_id, reply_id = new_id(), new_id()
        # The job first: its per-user limit is a query, and nothing else is pending yet.
        payload = ChatPayload(conversation_id=conversation_id, user_message_id=question_id,
                              reply_message_id=reply_id, options=ChatOptions(**(body.get("options") or {})))
        job = new_job("chat", user.id, payload, request_id=g.get("request_id"), session_id=caller_session())
        conn = db.session.connection()
        if new_conversation:
            conn.execute(_INSERT_CONVERSATION, {"id": conversation_id, "user_id": user.id,
                                                "title": _title_from(body["message"]),
                                                "created_at": now, "updated_at": now})
        else:
            conn.execute(_TOUCH_CONVERSATION, {"conversation_id": conversation_id, "now": now})
        conn.execute(_INSERT_MESSAGES, [
            {"id": question_id, "conversation_id": conversation_id, "role": "user", "content": body["message"],
             "status": MessageStatus.complete.value, "job_id": None, "created_at": now, "updated_at": now},
            {"id": reply_id, "conversation_id": conversation_id, "role": "assistant", "content": "",
             "status": MessageStatus.streaming.value, "job_id": job.id,
             "created_at": now + timedelta(microseconds=1), "updated_at": now},
        ])
        answer = {"job_id": job.id, "conversation_id": conversation_id, "message_id": question_id,
                  "reply_message_id": reply_id}
        if idempotency_key is not None:
            conn.execute(_INSERT_KEY, [{
                "id": new_id(), "user_id": user.id, "scope": SCOPE, "key": idempotency_key,
                "request_hash": request_hash, "response": answer, "created_at": now}])
    return answer, job


def message_out(m: Message) -> dict:
    """Return a message as MessageOut; a reply still streaming carries the text streamed so far."""
    streaming = m.status == MessageStatus.streaming.value
    # A reply still generating is written at its end; until then its text is in its job's stream.
    content = stream.streamed_text(get_redis(), m.job_id) if streaming and m.job_id else m.content
    return {"id": m.id, "role": m.role, "content": content, "status": m.status,
            "streaming": streaming, "job_id": m.job_id,
            "citations": m.citations, "created_at": m.created_at,
            "audio_url": audio_url(url_binding(), m.meta["audio_id"]) if (m.meta or {}).get("audio_id") else None}


def history(user: Caller, conversation_id: str, limit: int, before: str | None) -> dict:
    """Return the messages older than `before`, oldest first; 400 if `before` is not of this conversation."""
    get_conversation(user, conversation_id)
    stmt = select(Message).where(Message.conversation_id == conversation_id)
    if before:
        pivot = db.session.get(Message, before) if len(before) <= 64 else None
        if pivot is None or pivot.conversation_id != conversation_id:
            raise APIError(400, "invalid_cursor", "`before` is not a message of this conversation")
        stmt = stmt.where(or_(Message.created_at < pivot.created_at,
                              and_(Message.created_at == pivot.created_at, Message.id < pivot.id)))
    rows = list(db.session.execute(stmt.order_by(Message.created_at.desc(), Message.id.desc())
                                   .limit(limit + 1)).scalars())
    has_more = len(rows) > limit
    rows = list(reversed(rows[:limit]))
    return {"conversation_id": conversation_id, "items": [message_out(m) for m in rows], "has_more": has_more,
            "next_before": rows[0].id if has_more and rows else None}


def list_conversations(user: Caller, limit: int, offset: int) -> dict:
    """Return a page of the caller's conversations, most recently updated first, and the total."""
    base = select(Conversation).where(Conversation.user_id == user.id)
    total = db.session.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    rows = db.session.execute(base.order_by(Conversation.updated_at.desc(), Conversation.id)
                              .limit(limit).offset(offset)).scalars()
    return {"items": list(rows), "total": total, "limit": limit, "offset": offset}


def rename(user: Caller, conversation_id: str, title: str) -> Conversation:
    """Set a conversation's title (stripped); 404 unless it is the caller's."""
    conv = get_conversation(user, conversation_id)
    with write_tx():
        conv = db.session.merge(conv)
        conv.title = title.strip()
    return conv


def delete_conversation(user: Caller, conversation_id: str) -> None:
    """Stop its running replies, then remove it and its messages."""
    get_conversation(user, conversation_id)
    job_ids = db.session.execute(select(Message.job_id).where(
        Message.conversation_id == conversation_id, Message.job_id.is_not(None))).scalars().all()
    for job in db.session.execute(select(Job).where(Job.id.in_(job_ids), Job.state.in_(ACTIVE_STATES))).scalars():
        try:
            cancel(job)
        except APIError:
            pass  # it ended meanwhile
    with write_tx():
        db.session.execute(delete(Message).where(Message.conversation_id == conversation_id))
        db.session.execute(delete(Conversation).where(Conversation.id == conversation_id))
