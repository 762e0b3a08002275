"""Database models shared by the API and the worker."""
from shared.models.chat import Conversation, IdempotencyKey, Message, MessageStatus
from shared.models.files import Chunk, File, FileScope, FileStatus
from shared.models.job import Job, JobState
from shared.models.speech import AudioClip
from shared.models.user import Role, User, UserStatus

__all__ = ["AudioClip", "Chunk", "Conversation", "File", "FileScope", "FileStatus", "IdempotencyKey", "Job", "JobState",
           "Message", "MessageStatus", "Role", "User", "UserStatus"]
