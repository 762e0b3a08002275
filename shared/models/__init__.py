"""Database models shared by the API and the worker."""
from shared.models.job import Job, JobState
from shared.models.user import Role, User, UserStatus

__all__ = ["Job", "JobState", "Role", "User", "UserStatus"]
