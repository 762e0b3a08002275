"""Request and response schemas of /api/chat."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from api.schemas.common import JobEnvelope, PathId, Strict
from shared.settings import get_settings


class SendOptions(Strict):
    """Options of POST /api/chat/send: speak the reply, and whether to draw on the user's files."""
    tts: bool = False
    use_knowledge: bool | None = Field(None, description="default: on when the user can see ready files")


class SendBody(Strict):
    """Request of POST /api/chat/send: the message (not blank, at most CHAT_MAX_MESSAGE_CHARS) and its conversation."""
    message: str = Field(min_length=1, max_length=100_000)
    conversation_id: str | None = Field(None, max_length=64)
    options: SendOptions = Field(default_factory=SendOptions)

    @field_validator("message")
    @classmethod
    def _length(cls, v: str) -> str:
        limit = get_settings().CHAT_MAX_MESSAGE_CHARS
        if not v.strip():
            raise ValueError("the message is empty")
        if len(v) > limit:
            raise ValueError(f"the message is longer than {limit} characters")
        return v


class SendResponse(JobEnvelope):
    """Response of POST /api/chat/send (202): the reply's job, the conversation and both message ids."""
    conversation_id: str
    message_id: str = Field(description="the stored user message")
    reply_message_id: str = Field(description="the assistant reply being generated")


class MessageOut(BaseModel):
    """One message of a conversation as GET /api/chat/history answers it."""
    id: str
    role: str
    content: str
    status: str
    streaming: bool
    job_id: str | None = None
    citations: list[dict[str, Any]] | None = None
    audio_url: str | None = None
    created_at: datetime


class HistoryQuery(Strict):
    """Query of GET /api/chat/history: the conversation, a page size and the message to page back from."""
    conversation_id: str = Field(max_length=64)
    limit: int = Field(50, ge=1, le=200)
    before: str | None = Field(None, max_length=64, description="a message id: older messages than it")


class HistoryPage(BaseModel):
    """Response of GET /api/chat/history: one page of messages, and the cursor to the older ones."""
    conversation_id: str
    items: list[MessageOut]
    has_more: bool
    next_before: str | None = None


class ConversationOut(BaseModel):
    """One conversation as the conversation list and rename answer it."""
    id: str
    title: str
    created_at: datetime
    updated_at: datetime


class ConversationPage(BaseModel):
    """Response of GET /api/chat/conversations: one page of the user's conversations."""
    items: list[ConversationOut]
    total: int
    limit: int
    offset: int


class ConversationPath(BaseModel):
    """Path of /api/chat/conversations/<conversation_id>."""
    conversation_id: PathId


class ConversationPatch(Strict):
    """Request of PATCH /api/chat/conversations/<conversation_id>: the new title."""
    title: str = Field(min_length=1, max_length=200)
