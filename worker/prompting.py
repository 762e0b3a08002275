"""The prompt for a chat reply: the tutor persona, then as many recent turns as the budget allows."""
from __future__ import annotations

from sqlalchemy import select

from shared.database import db
from shared.models import Message, MessageStatus
from shared.settings import get_settings

CHARS_PER_TOKEN = 4  # a cheap, conservative estimate; the budget leaves room for the reply


def estimate_tokens(text: str) -> int:
    """Return a cheap over-estimate of the tokens in `text` (4 characters a token, plus one)."""
    return len(text) // CHARS_PER_TOKEN + 1


def build_messages(conversation_id: str, upto: Message, context: str | None = None) -> list[dict]:
    """System prompt (plus retrieved context), then history ending with the user's message `upto`."""
    s = get_settings()
    rows = db.session.execute(
        select(Message).where(Message.conversation_id == conversation_id, Message.created_at <= upto.created_at)
        .order_by(Message.created_at.desc(), Message.id.desc()).limit(200)).scalars()
    system = s.LLM_SYSTEM_PROMPT
    if context:
        system += ("\n\nAnswer from this course material and cite it as [1], [2]...:\n"
                   f"<context>\n{context}\n</context>")
    budget = s.LLM_CONTEXT_TOKENS - estimate_tokens(system)
    turns: list[dict] = []
    for m in rows:
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
