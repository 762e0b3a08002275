"""The baselines served under the same gunicorn settings as the API.

- `/bare`: a bare Flask JSON endpoint (enqueue and polling baselines).
- `/bare/stream`: the streams baseline, the floor of a token relay on this machine: POST starts a
  greenlet that writes `BARE_TOKENS` token events at `BARE_RATE` per second to a Redis Stream
  (as a worker would), and `GET /bare/stream/<key>` relays them as SSE with a blocking XREAD per
  client. No authentication, database, job record or Celery: what is left is Flask, gevent
  and Redis.
"""
import json
import os
import threading
import time
import uuid

import redis
from flask import Flask, Response


def _publish(r: redis.Redis, key: str, tokens: int, rate: float) -> None:
    for i in range(tokens):
        if i:
            time.sleep(1 / rate)  # the first token at once, as the echo provider does
        r.xadd(key, {"e": "token", "d": json.dumps({"delta": f"tok{i} ", "t": round(time.time(), 4)})})
    r.xadd(key, {"e": "done", "d": "{}"})
    r.expire(key, 300)


def create_app() -> Flask:
    app = Flask(__name__)
    r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True, max_connections=10_000)
    tokens, rate = int(os.environ.get("BARE_TOKENS", "40")), float(os.environ.get("BARE_RATE", "20"))

    @app.route("/bare", methods=["GET", "POST"])
    def bare():
        return {"ok": True, "job_id": "0" * 32}

    @app.post("/bare/stream")
    def start_stream():
        key = f"bare:{uuid.uuid4().hex}"
        threading.Thread(target=_publish, args=(r, key, tokens, rate), daemon=True).start()
        return {"job_id": key, "events_url": f"/bare/stream/{key}"}

    @app.get("/bare/stream/<key>")
    def follow(key: str):
        def frames():
            after = "0"
            while True:
                for _, entries in r.xread({key: after}, count=500, block=15000) or []:
                    for entry_id, fields in entries:
                        after = entry_id
                        yield f"id: {entry_id}\nevent: {fields['e']}\ndata: {fields['d']}\n\n"
                        if fields["e"] == "done":
                            return
        return Response(frames(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app
