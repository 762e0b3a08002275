"""Typed settings for the API and the worker, read from the environment and `.env`.

`get_settings()` is the one place that reads configuration. In production it refuses to
start with a missing, default or short secret and names the offending variable.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

from limits import parse_many
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-change-me"
MIN_SECRET_LENGTH = 32


class InsecureConfiguration(RuntimeError):
    """Raised when production settings carry a missing, default or short secret."""


class Settings(BaseSettings):
    """The configuration, read from the environment and .env; production refuses missing or weak secrets."""
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    APP_ENV: Literal["development", "production", "testing"] = "development"
    SECRET_KEY: str = ""  # empty outside production: a development default is used
    JWT_SECRET_KEY: str = ""
    CORS_ORIGINS: str = "http://localhost:3000,http://127.0.0.1:3000"
    DATABASE_URL: str = "sqlite:///var/app.db"
    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    REDIS_SOCKET_TIMEOUT: float = 1.0
    PUBLIC_BASE_URL: str = ""  # absolute prefix for URLs in responses; empty = relative

    # Mail: when MAIL_SERVER is unset in development the dev mail sink on MAIL_PORT receives it.
    MAIL_SERVER: str = "127.0.0.1"
    MAIL_PORT: int = 1025
    MAIL_USE_TLS: bool = False
    MAIL_USE_SSL: bool = False
    MAIL_USERNAME: str = ""
    MAIL_PASSWORD: str = ""
    MAIL_DEFAULT_SENDER: str = "Mentor <no-reply@mentor.local>"
    MAIL_TIMEOUT: float = 10.0
    MAIL_MAX_RETRIES: int = 5

    FLOWER_BASIC_AUTH: str = ""

    # Tokens and codes
    JWT_ACCESS_TOKEN_EXPIRES: int = Field(900, ge=60)  # seconds
    JWT_REFRESH_TOKEN_EXPIRES: int = Field(30 * 86400, ge=300)
    SIGNED_URL_EXPIRES: int = Field(600, ge=30)
    CODE_TTL: int = 300
    CODE_MAX_ATTEMPTS: int = 5

    # Limits
    MAX_CONTENT_LENGTH: int = 1024 * 1024  # JSON bodies; uploads have their own limit
    UPLOAD_MAX_BYTES: int = 25 * 1024 * 1024
    MAX_ACTIVE_JOBS_PER_KIND: int = Field(20, ge=1)  # queued or running, per user and kind
    # Per signed-in user (keyed on the user id), in the `limits` notation: 429 `rate_limited` beyond.
    CHAT_RATE_LIMIT: str = "30/minute"  # POST /api/chat/send
    TTS_RATE_LIMIT: str = "20/minute"  # POST /api/tts
    UPLOAD_RATE_LIMIT: str = "60/hour"  # POST /api/upload/file
    SEARCH_RATE_LIMIT: str = "60/minute"  # POST /api/knowledge/search
    STORAGE_QUOTA_BYTES: int = Field(1024 ** 3, ge=0)  # a user's files and audio clips together
    MAX_FILES_PER_USER: int = Field(1000, ge=0)
    MAX_STREAMS_PER_USER: int = Field(50, ge=1)  # open event streams (per client IP for anonymous links)
    RATELIMIT_ENABLED: bool = True
    RATELIMIT_AUTH: str = "30/minute;300/hour"
    # send-code: per address and purpose however spelled, from anywhere; per address, purpose and
    # client IP (so others cannot use up the owner's codes beyond the first); per client IP.
    RATELIMIT_SEND_CODE_EMAIL: str = "1/minute"
    RATELIMIT_SEND_CODE_EMAIL_IP: str = "6/hour"
    RATELIMIT_SEND_CODE_IP: str = "20/hour"
    # Reverse proxies in front of the API that append to X-Forwarded-For (werkzeug's ProxyFix):
    # per-IP limits then see the client's address. 0: X-Forwarded-For is ignored.
    TRUSTED_PROXIES: int = Field(0, ge=0)

    # Jobs
    JOB_LEASE_SECONDS: float = 8.0
    JOB_HEARTBEAT_SECONDS: float = 2.0
    SWEEP_INTERVAL_SECONDS: float = 3.0
    REDISPATCH_QUEUED_AFTER: int = 300  # a queued job not picked up after this is sent again
    # A queued job older than this whose message is neither waiting in its queue nor held by a
    # consumer (lost with a consumer killed as it took it) is sent again by the sweeper.
    REQUEUE_LOST_AFTER: float = Field(5.0, gt=0)  # with the sweep interval: resent within ~9 s
    JOB_EVENTS_TTL: int = 86400  # seconds a job's event stream is kept after its last event
    JOB_EVENTS_MAXLEN: int = 5000
    JOB_RETENTION_DAYS: int = 30
    SSE_KEEPALIVE_SECONDS: float = 15.0
    BROKER_VISIBILITY_TIMEOUT: int = 7200  # above the longest task: last resort only
    # Time limits per task kind, seconds. The soft limit is a deadline the task checks (and, on
    # a prefork pool, a signal that interrupts it); TIME_LIMIT_GRACE later the hard limit stops
    # it regardless (kills a prefork child; times out a gevent greenlet). Either way the job
    # ends failed with code time_limit, once, and is not run again.
    MAIL_TIME_LIMIT: float = Field(60.0, gt=0)
    FILES_TIME_LIMIT: float = Field(600.0, gt=0)
    TTS_TIME_LIMIT: float = Field(900.0, gt=0)  # above a reply's speech follow limit (600 s)
    CHAT_TIME_LIMIT: float = Field(300.0, gt=0)
    MAINTENANCE_TIME_LIMIT: float = Field(120.0, gt=0)  # the sweeper, retention, probes
    TIME_LIMIT_GRACE: float = Field(10.0, ge=0)

    # Files and knowledge
    STORAGE_DIR: str = "var/storage"
    UPLOAD_TYPES: str = "pdf,docx,txt,md,html,png,jpg,mp3,wav"
    UPLOAD_MAX_PAGES: int = 2000
    DOCX_MAX_UNCOMPRESSED: int = 100 * 1024 * 1024  # zip-bomb guard
    # Read from the archive's end records before anything is parsed: beyond either, an upload is 415.
    DOCX_MAX_ENTRIES: int = Field(5000, ge=1)
    DOCX_MAX_DIRECTORY_BYTES: int = Field(1024 * 1024, ge=1024)
    PDF_MAX_PAGE_CONTENT_BYTES: int = Field(1024 * 1024, ge=1024)  # drawing instructions per page (decoded)
    CHUNK_CHARS: int = Field(800, ge=100)
    CHUNK_OVERLAP: int = Field(150, ge=0)
    RETRIEVAL_PROVIDER: Literal["builtin", "http"] = "builtin"
    RETRIEVAL_BASE_URL: str = ""  # http provider: the original mentor system's RAG service
    RETRIEVAL_TIMEOUT: float = 10.0
    KNOWLEDGE_TOP_K: int = Field(4, ge=1, le=20)  # chunks put into a chat prompt

    # Chat and the LLM
    LLM_PROVIDER: Literal["local", "openai", "tutornet", "echo"] = "local"
    LLM_BASE_URL: str = ""  # openai: e.g. http://127.0.0.1:8080/v1 ; tutornet: the service root
    LLM_MODEL: str = "smollm2-135m-instruct"
    LLM_API_KEY: str = ""
    LLM_MODEL_PATH: str = ""  # local: a GGUF file; empty = the one scripts/ensure-llm fetched
    LLM_THREADS: int = Field(2, ge=1)
    LLM_CONNECT_TIMEOUT: float = 5.0
    LLM_READ_TIMEOUT: float = 60.0  # longest silence between two tokens
    LLM_CONNECT_RETRIES: int = 2  # before the first token only
    LLM_MAX_TOKENS: int = Field(256, ge=1, le=8192)
    LLM_TEMPERATURE: float = Field(0.7, ge=0, le=2)
    LLM_CONTEXT_TOKENS: int = Field(1536, ge=256)  # history budget for the prompt
    LLM_SYSTEM_PROMPT: str = ("You are a patient, encouraging tutor. Explain step by step, check understanding, "
                              "and answer from the course material when it is given.")
    LLM_ECHO_RATE: float = Field(20.0, gt=0)  # echo provider: tokens per second
    LLM_ECHO_TOKENS: int = Field(40, ge=1)
    CHAT_MAX_MESSAGE_CHARS: int = Field(4000, ge=1)
    IDEMPOTENCY_TTL_HOURS: int = 24

    # Speech
    TTS_ENGINE: Literal["local", "espeak", "openai", "tutornet"] = "local"
    TTS_VOICE: str = ""  # default voice; empty = the engine's first
    TTS_MAX_CHARS: int = Field(5000, ge=1)
    TTS_DEFAULT_FORMAT: Literal["wav", "ogg", "mp3"] = "wav"
    TTS_BASE_URL: str = ""  # openai: .../v1 ; tutornet: the gateway root
    TTS_API_KEY: str = ""
    TTS_MODEL: str = "tts-1"
    TTS_SAMPLE_RATE: int = 22050  # tutornet: the rate of the raw PCM it answers
    TTS_PROMPT_TEXT: str = ""  # tutornet: a cloned voice's prompt text ...
    TTS_PROMPT_WAV: str = ""  # ... and its WAV file
    TTS_VOICE_PATH: str = ""  # local: a Piper .onnx voice; empty = the one scripts/ensure-tts fetched
    PIPER_PYTHON: str = ""  # local: the Python of Piper's own virtualenv; empty = the cached one
    TTS_THREADS: int = Field(1, ge=1)
    TTS_RESPONSE_FORMAT: Literal["pcm", "wav"] = "pcm"  # openai
    TTS_CONNECT_TIMEOUT: float = 5.0
    TTS_READ_TIMEOUT: float = 60.0

    LOG_LEVEL: str = "INFO"
    LOG_JSON: bool | None = None  # default: JSON in production

    @property
    def is_production(self) -> bool:
        """Whether APP_ENV is production."""
        return self.APP_ENV == "production"

    @property
    def upload_types(self) -> set[str]:
        """Return UPLOAD_TYPES as a set of lower-case names."""
        return {t.strip().lower() for t in self.UPLOAD_TYPES.split(",") if t.strip()}

    @property
    def cors_origins(self) -> list[str]:
        """Return CORS_ORIGINS as a list of origins."""
        return [o.strip() for o in self.CORS_ORIGINS.split(",") if o.strip()]

    @field_validator("CHAT_RATE_LIMIT", "TTS_RATE_LIMIT", "UPLOAD_RATE_LIMIT", "SEARCH_RATE_LIMIT",
                     "RATELIMIT_AUTH", "RATELIMIT_SEND_CODE_EMAIL", "RATELIMIT_SEND_CODE_EMAIL_IP",
                     "RATELIMIT_SEND_CODE_IP")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        """A limit in the `limits` notation (`30/minute;300/hour`): a typo stops the start, not a route."""
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit such as 30/minute or 30/minute;300/hour: {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _check_production_secrets(self) -> Settings:
        self.MAIL_SERVER = self.MAIL_SERVER.strip() or "127.0.0.1"  # empty means unset: the dev mail sink
        if not self.is_production:
            self.SECRET_KEY = self.SECRET_KEY or DEV_SECRET
            self.JWT_SECRET_KEY = self.JWT_SECRET_KEY or DEV_SECRET + "-jwt"
            return self
        problems = []
        for name in ("SECRET_KEY", "JWT_SECRET_KEY"):
            value = getattr(self, name)
            if not value:
                problems.append(f"{name} is missing")
            elif value == DEV_SECRET:
                problems.append(f"{name} is the development default")
            elif len(value) < MIN_SECRET_LENGTH:
                problems.append(f"{name} is shorter than {MIN_SECRET_LENGTH} characters")
        if self.SECRET_KEY and self.SECRET_KEY == self.JWT_SECRET_KEY:
            problems.append("SECRET_KEY and JWT_SECRET_KEY must differ")
        user, _, password = self.FLOWER_BASIC_AUTH.partition(":")
        if not user or len(password) < 12:
            problems.append("FLOWER_BASIC_AUTH must be user:password with a password of 12+ characters")
        if problems:
            raise InsecureConfiguration("refusing to start in production: " + "; ".join(problems))
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process's settings, read once (raises InsecureConfiguration in unsafe production)."""
    return Settings()
