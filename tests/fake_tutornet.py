"""A small server that speaks the original mentor system's LLM protocol exactly.

POST /chat/stream {input, session_id, user_id} -> SSE lines
`data: {"chunk": "...", "status": "streaming"}` and a last `data: {"status": "finished"}`.
An input containing "garbage" gets an unreadable line mid-stream; "hang-up" ends without
`finished`.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        if self.path != "/chat/stream":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not {"input", "session_id", "user_id"} <= body.keys():
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.requests.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        words = f"TutorNet heard: {body['input'][-40:]}".split()
        for i, word in enumerate(words):
            self._send({"chunk": word + " ", "status": "streaming"})
            time.sleep(self.server.delay)
            if i == 1 and "garbage" in body["input"]:
                self.wfile.write(b"data: {this is not json\n\n")
                self.wfile.flush()
                return
            if i == 1 and "hang-up" in body["input"]:
                return
        self._send({"status": "finished"})

    def _send(self, obj):
        self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
        self.wfile.flush()


class FakeTutorNet:
    def __init__(self, delay: float = 0.01):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.requests = []
        self.server.delay = delay
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[dict]:
        return self.server.requests

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
