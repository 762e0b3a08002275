"""The baseline: a bare Flask JSON endpoint, served with the same gunicorn settings as the API."""
from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.route("/bare", methods=["GET", "POST"])
    def bare():
        return {"ok": True, "job_id": "0" * 32}

    return app
