"""Typed job payloads: one pydantic model per job kind.

The API builds them from validated requests; `shared.jobs.new_job` stores them as JSON; the
worker validates the stored JSON again (`parse`) before a handler sees it. No dict reaches a task.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    """A job's input: immutable, and nothing beyond its fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MailPayload(Payload):
    """Input of a mail job: the recipient, the template and the values it is filled with."""
    to: str = Field(max_length=254)
    template: str = Field(max_length=64)
    context: dict[str, Any] = Field(default_factory=dict)  # the code is dropped once the mail is built


class ChatOptions(Payload):
    """The options of a chat send: speak the reply, and whether to draw on the user's files."""
    tts: bool = False
    use_knowledge: bool | None = None  # None: on when the user can see ready files


class ChatPayload(Payload):
    """Input of a chat job: the conversation, the user's message and the reply to write."""
    conversation_id: str
    user_message_id: str
    reply_message_id: str
    options: ChatOptions = Field(default_factory=ChatOptions)


class FilePayload(Payload):
    """Input of a file job: the file to index and its sniffed type."""
    file_id: str
    kind: str  # the sniffed type (a key of api.services.sniff.CONTENT_TYPES)


class TTSPayload(Payload):
    """Input of a tts job: the text, the voice (None: the engine's default) and the audio format."""
    text: str
    voice: str | None = None
    format: Literal["wav", "ogg", "mp3"] = "wav"


class SpeechPayload(Payload):
    """The speech that follows a chat reply's token stream."""

    message_id: str
    chat_job_id: str
    voice: str | None = None
    format: Literal["wav", "ogg", "mp3"] = "wav"


class NoopPayload(Payload):
    """A probe job: no input."""


# kind -> its payload model (the kinds of shared.jobs.KIND_TASKS)
PAYLOADS: dict[str, type[Payload]] = {
    "mail": MailPayload, "chat": ChatPayload, "file": FilePayload, "tts": TTSPayload,
    "speech": SpeechPayload, "noop": NoopPayload,
}


def parse(kind: str, data: dict[str, Any] | None) -> Payload:
    """The stored payload of a `kind` job, validated (raises pydantic.ValidationError)."""
    return PAYLOADS[kind].model_validate(data or {})
