"""/api/chat: send a message (answered by a job), history, conversations."""
from __future__ import annotations

from flask import request
from flask_openapi3 import APIBlueprint, Tag

from api.schemas.chat import (
    ConversationOut,
    ConversationPage,
    ConversationPatch,
    ConversationPath,
    HistoryPage,
    HistoryQuery,
    SendBody,
    SendResponse,
)
from api.schemas.common import ERRORS, ErrorResponse, MessageResponse, PageQuery
from api.security import authenticate
from api.services import chat

bp = APIBlueprint("chat", __name__, url_prefix="/api/chat", abp_tags=[Tag(name="chat")],
                  abp_security=[{"bearer": []}], abp_responses=ERRORS)


@bp.post("/send", responses={202: SendResponse, 422: ErrorResponse})
def send(body: SendBody):
    """Send a message; the reply streams as `token` events on the job's events_url, then `done`.

    Send an `Idempotency-Key` header to make retries safe: the same key and body within 24 hours
    return the first answer and queue nothing; the same key with another body is refused (422).
    """
    user = authenticate()
    return chat.send(user, body.model_dump(mode="json"), request.headers.get("Idempotency-Key")), 202


@bp.get("/history", responses={200: HistoryPage})
def history(query: HistoryQuery):
    """A conversation's messages, oldest to newest, a page at a time (`before` = next_before)."""
    user = authenticate()
    return chat.history(user, query.conversation_id, query.limit, query.before)


@bp.get("/conversations", responses={200: ConversationPage})
def conversations(query: PageQuery):
    """The caller's conversations, most recently active first."""
    user = authenticate()
    page = chat.list_conversations(user, query.limit, query.offset)
    return {**page, "items": [ConversationOut.model_validate(c, from_attributes=True) for c in page["items"]]}


@bp.patch("/conversations/<id:conversation_id>", responses={200: ConversationOut})
def rename(path: ConversationPath, body: ConversationPatch):
    """Rename a conversation."""
    user = authenticate()
    return ConversationOut.model_validate(chat.rename(user, path.conversation_id, body.title), from_attributes=True)


@bp.delete("/conversations/<id:conversation_id>", responses={200: MessageResponse})
def delete(path: ConversationPath):
    """Delete a conversation and its messages; replies still generating are cancelled."""
    user = authenticate()
    chat.delete_conversation(user, path.conversation_id)
    return {"message": "conversation deleted"}
