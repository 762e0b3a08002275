"""The essential baselines: the work `POST /api/chat/send` and `GET /api/jobs/<id>` cannot avoid, and nothing else.

Served by the same gunicorn command and settings as the API (devtools/stack.py `start_web`),
on the same database and Redis, answering the same paths with the same JSON:

- essential enqueue (`POST /api/chat/send`): validate the body with the API's pydantic model
  (`SendBody`); verify the JWT (HS256, PyJWT) and check revocation in one Redis round trip
  (one EXISTS of the same two keys the API checks, api/extensions/jwt.py); in one write
  transaction, Core inserts of the rows the route writes (the job, the conversation, both
  messages, the idempotency key when one is sent), then commit; publish the same Celery
  message (protocol 2: task name, queue, task id = job id, the same headers and body as
  `send_task`) with kombu; answer 202 with the same envelope
  (signed status and events URLs).
- essential poll (`GET /api/jobs/<id>`): verify the JWT and the same one round trip; one
  SELECT of the job by primary key and owner; answer the JSON of api.services.jobs.to_dict.

Left out, because the API could do without them: the user row (the token's `ver` claim is
trusted), the per-user rate limit and active-jobs count, the idempotency look-up before the
insert (the unique constraint answers a replay), the ORM, flask-openapi3 and the extensions.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import uuid
from datetime import timedelta

import jwt
import redis
from flask import Flask, request
from kombu import Connection
from kombu.pools import producers
from pydantic import ValidationError
from sqlalchemy import bindparam, create_engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from api.extensions.jwt import revoked_key, session_key, session_of
from api.schemas.chat import SendBody
from shared.celery_config import route_for
from shared.database import normalise_url, utcnow, wait_for_write_lock  # also the SQLite connect and BEGIN hooks
from shared.jobs.kinds import KIND_TASKS
from shared.models import Conversation, IdempotencyKey, Job, Message
from shared.redis_client import MAX_CONNECTIONS
from shared.settings import get_settings
from shared.signing import Binding, audio_url, job_urls

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
SCOPE = "chat.send"
TASK = KIND_TASKS["chat"]
QUEUE = route_for(TASK)
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
JOBS, CONVERSATIONS, MESSAGES, KEYS = (m.__table__ for m in (Job, Conversation, Message, IdempotencyKey))
INSERT_JOB, INSERT_CONVERSATION, INSERT_MESSAGES, INSERT_KEY = (insert(t) for t in (JOBS, CONVERSATIONS, MESSAGES,
                                                                                      KEYS))
# Built once, with bound parameters: a request only binds its values.
TOUCH_CONVERSATION = update(CONVERSATIONS).where(CONVERSATIONS.c.id == bindparam("conversation_id"),
                                                 CONVERSATIONS.c.user_id == bindparam("owner"))
FIND_KEY = select(KEYS.c.request_hash, KEYS.c.response).where(
    KEYS.c.user_id == bindparam("owner"), KEYS.c.scope == SCOPE, KEYS.c.key == bindparam("key"))
POLL = select(*(JOBS.c[name] for name in ("id", "kind", "state", "progress", "result", "error", "attempts",
                                          "request_id", "created_at", "started_at", "finished_at", "updated_at"))
              ).where(JOBS.c.id == bindparam("job_id"), JOBS.c.user_id == bindparam("owner"))


class Refused(Exception):
    """An error answer in the API's shape."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _iso(value):
    return value.isoformat(timespec="milliseconds") + "Z" if value is not None else None


def _title_from(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= 60 else line[:57].rstrip() + "..."


def create_app() -> Flask:
    """The essential enqueue and poll (this module's docstring), on REDIS_URL and DATABASE_URL."""
    s = get_settings()
    app = Flask(__name__)
    app.json.sort_keys = False
    r = redis.Redis.from_url(s.REDIS_URL, socket_connect_timeout=s.REDIS_SOCKET_TIMEOUT,
                             socket_timeout=max(s.REDIS_SOCKET_TIMEOUT, 1.0), decode_responses=True,
                             max_connections=MAX_CONNECTIONS)
    url = normalise_url(s.DATABASE_URL)  # the options of shared.database.init_db
    engine = create_engine(url, **({"connect_args": {"timeout": 15, "check_same_thread": False}}
                                   if url.startswith("sqlite") else {"pool_size": 10, "max_overflow": 20}))
    broker = Connection(s.REDIS_URL, transport_options={"visibility_timeout": s.BROKER_VISIBILITY_TIMEOUT,
                                                        "socket_connect_timeout": s.REDIS_SOCKET_TIMEOUT,
                                                        "socket_timeout": 5, "max_connections": 1000})
    origin, reply_to = f"gen{os.getpid()}@{socket.gethostname()}", str(uuid.uuid4())

    def caller() -> tuple[str, Binding]:
        auth = request.headers.get("Authorization", "")
        try:
            claims = jwt.decode(auth[7:] if auth.startswith("Bearer ") else "", s.JWT_SECRET_KEY,
                                algorithms=["HS256"])
        except jwt.PyJWTError:
            raise Refused(401, "invalid_token", "the token is not valid") from None
        if claims.get("type") != "access" or not isinstance(claims.get("sub"), str):
            raise Refused(401, "invalid_token", "the token is not valid")
        sid = session_of(claims)
        if r.exists(revoked_key(claims["jti"]), session_key(sid)):
            raise Refused(401, "token_revoked", "the token has been revoked")
        return claims["sub"], Binding(claims["sub"], claims.get("ver"), sid)

    def write(statements) -> None:
        """One write transaction: BEGIN IMMEDIATE, waited for as shared.database.write_tx waits."""
        with engine.connect() as conn:
            wait_for_write_lock(lambda: conn.execution_options(sqlite_immediate=True).begin(), conn.rollback)
            for stmt, params in statements:
                if conn.execute(stmt, params).rowcount == 0:
                    raise Refused(404, "not_found", "no such conversation")
            conn.commit()

    def publish(job_id: str) -> None:
        """The message `celery.send_task(TASK, args=[job_id], task_id=job_id)` sends (protocol 2)."""
        headers = {"lang": "py", "task": TASK, "id": job_id, "shadow": None, "eta": None, "expires": None,
                   "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": job_id,
                   "parent_id": None, "argsrepr": repr([job_id]), "kwargsrepr": "{}", "origin": origin,
                   "ignore_result": None, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}}
        with producers[broker].acquire(block=True) as producer:
            producer.publish(([job_id], {}, EMBED), exchange="", routing_key=QUEUE, serializer="json",
                             headers=headers, correlation_id=job_id, reply_to=reply_to, delivery_mode=2,
                             retry=True, retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                                                       "interval_max": 0.5})

    @app.errorhandler(Refused)
    def refused(exc: Refused):
        return {"error": {"code": exc.code, "message": exc.message, "details": None}}, exc.status

    @app.after_request
    def stamp(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Request-ID"] = request.environ.get("bench.request_id") or uuid.uuid4().hex
        return response

    @app.get("/essential/health")
    def health():
        return {"status": "ok"}

    @app.post("/api/chat/send")
    def send():
        try:
            body = SendBody.model_validate_json(request.get_data())
        except ValidationError:
            raise Refused(400, "validation_error", "the request body is not valid") from None
        user_id, binding = caller()
        key = request.headers.get("Idempotency-Key")
        if key is not None and not IDEMPOTENCY_KEY.match(key):
            raise Refused(400, "invalid_idempotency_key", "Idempotency-Key must be 8-128 characters")
        request_id = request.environ["bench.request_id"] = uuid.uuid4().hex
        now = utcnow()
        job_id, question_id, reply_id = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
        conversation_id = body.conversation_id or uuid.uuid4().hex
        dumped = body.model_dump(mode="json")
        statements = [(INSERT_JOB, [{
            "id": job_id, "kind": "chat", "user_id": user_id, "request_id": request_id, "session_id": binding.session,
            "payload": {"conversation_id": conversation_id, "user_message_id": question_id,
                        "reply_message_id": reply_id, "options": dumped["options"]},
            "state": "queued", "progress": 0.0, "attempts": 0, "dispatched_at": now, "created_at": now,
            "updated_at": now}])]
        if body.conversation_id:
            statements.append((TOUCH_CONVERSATION, {"conversation_id": conversation_id, "owner": user_id,
                                                    "updated_at": now}))
        else:
            statements.append((INSERT_CONVERSATION, [{"id": conversation_id, "user_id": user_id,
                                                      "title": _title_from(body.message), "created_at": now,
                                                      "updated_at": now}]))
        statements.append((INSERT_MESSAGES, [
            {"id": question_id, "conversation_id": conversation_id, "role": "user", "content": body.message,
             "status": "complete", "job_id": None, "created_at": now, "updated_at": now},
            {"id": reply_id, "conversation_id": conversation_id, "role": "assistant", "content": "",
             "status": "streaming", "job_id": job_id, "created_at": now + timedelta(microseconds=1),
             "updated_at": now}]))
        answer = {"job_id": job_id, "conversation_id": conversation_id, "message_id": question_id,
                  "reply_message_id": reply_id}
        request_hash = None
        if key is not None:
            canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
            request_hash = hashlib.sha256(canonical.encode()).hexdigest()
            statements.append((INSERT_KEY, [{"id": uuid.uuid4().hex, "user_id": user_id, "scope": SCOPE, "key": key,
                                             "request_hash": request_hash, "response": answer, "created_at": now}]))
        try:
            write(statements)
        except IntegrityError:  # the key was used before: answer as the first request was answered
            with engine.connect() as conn:
                row = conn.execute(FIND_KEY, {"owner": user_id, "key": key}).first()
            if row is None or row.request_hash != request_hash:
                raise Refused(422, "idempotency_key_reused", "this key was used with another body") from None
            return {**row.response, **job_urls(row.response["job_id"], binding)}, 202
        publish(job_id)
        return {**answer, **job_urls(job_id, binding)}, 202

    @app.get("/api/jobs/<job_id>")
    def poll(job_id: str):
        user_id, binding = caller()
        with engine.connect() as conn:
            job = conn.execute(POLL, {"job_id": job_id, "owner": user_id}).first()
        if job is None:
            raise Refused(404, "not_found", "no such job")
        result = job.result
        if result and result.get("audio_id"):
            result = {**result, "audio_url": audio_url(binding, result["audio_id"])}
        return {"id": job.id, "kind": job.kind, "state": job.state, "progress": job.progress, "result": result,
                "error": job.error, "attempts": job.attempts, "request_id": job.request_id,
                "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
                "finished_at": _iso(job.finished_at), "updated_at": _iso(job.updated_at), **job_urls(job.id, binding)}

    return app
