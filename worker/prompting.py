"""The prompt for a chat reply: the tutor persona, then as many recent turns as the budget allows."""
from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Row

from shared.database import db
from shared.models import Message, MessageStatus
from shared.settings import get_settings

CHARS_PER_TOKEN = 4  # a cheap, conservative estimate; the budget leaves room for the reply
HISTORY_ROWS = 200
M = Message.__table__

# Built once: the turn's two messages and the history before them, newest first, in one Core read
# (the reply is written 1 µs after its question; rows up to the reply's time take in both).
_REPLY_AT = select(M.c.created_at).where(M.c.id == bindparam("reply_id")).scalar_subquery()
_TURN = (select(M.c.id, M.c.role, M.c.content, M.c.status, M.c.created_at)
         .where(M.c.conversation_id == bindparam("conversation_id"), M.c.created_at <= _REPLY_AT)
         .order_by(M.c.created_at.desc(), M.c.id.desc()).limit(HISTORY_ROWS + 2))


def estimate_tokens(text: str) -> int:
    """Return a cheap over-estimate of the tokens in `text` (4 characters a token, plus one)."""
    return len(text) // CHARS_PER_TOKEN + 1


def read_turn(conversation_id: str, question_id: str, reply_id: str) -> tuple[Row, Row, list[Row]] | None:
    """The question, the reply and the history that ends with the question (newest first);
    None when either message is gone (the conversation was deleted)."""
    rows = db.session.connection().execute(_TURN, {"conversation_id": conversation_id, "reply_id": reply_id}).all()
    question = next((r for r in rows if r.id == question_id), None)
    reply = next((r for r in rows if r.id == reply_id), None)
    if question is None or reply is None:
        return None
    history = [r for r in rows if r.created_at <= question.created_at and r.id != reply_id][:HISTORY_ROWS]
    return question, reply, history


def build_messages(history: list[Row], context: str | None = None) -> list[dict]:
    """System prompt (plus retrieved context), then the history (newest first, ending with the
    user's message) in order, as much of it as the context budget holds."""
    s = get_settings()
    system = s.LLM_SYSTEM_PROMPT
    if context:
        system += ("\n\nAnswer from this course material and cite it as [1], [2]...:\n"
                   f"<context>\n{context}\n</context>")
    budget = s.LLM_CONTEXT_TOKENS - estimate_tokens(system)
    turns: list[dict] = []
    for m in history:
        if m.role == "assistant" and (m.status == MessageStatus.failed.value or not m.content):
            continue
        cost = estimate_tokens(m.content)
        if turns and cost > budget:
            break
        content = m.content if cost <= budget else m.content[-budget * CHARS_PER_TOKEN:]
        turns.append({"role": m.role, "content": content})
        budget -= cost
    turns.reverse()
    return [{"role": "system", "content": system}, *turns]
