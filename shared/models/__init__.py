"""Database models shared by the API and the worker."""
from shared.models.chat import Conversation, IdempotencyKey, Message, MessageStatus
from shared.models.job import Job, JobState
from shared.models.user import Role, User, UserStatus

__all__ = ["Conversation", "IdempotencyKey", "Job", "JobState", "Message", "MessageStatus", "Role", "User",
           "UserStatus"]
