"""Production refuses to start with missing, default or short secrets, and says which."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def start(module_code: str, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "JWT_SECRET_KEY", "FLOWER_BASIC_AUTH"}}
    full.update(env, PYTHONPATH=str(ROOT), APP_ENV="production")
    return subprocess.run([sys.executable, "-c", module_code], env=full, capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT / "tests"))


API = "from api import create_app; create_app()"
WORKER = "import worker.celery_app"
GOOD = {"SECRET_KEY": "s" * 20 + "-0123456789abcdef", "JWT_SECRET_KEY": "j" * 20 + "-0123456789abcdef",
        "FLOWER_BASIC_AUTH": "ops:a-long-password"}


@pytest.mark.parametrize("code", [API, WORKER], ids=["api", "worker"])
@pytest.mark.parametrize("env,named", [
    ({}, "SECRET_KEY is missing"),
    ({**GOOD, "SECRET_KEY": "dev-insecure-change-me"}, "SECRET_KEY is the development default"),
    ({**GOOD, "JWT_SECRET_KEY": "short"}, "JWT_SECRET_KEY is shorter than 32"),
    ({**GOOD, "FLOWER_BASIC_AUTH": ""}, "FLOWER_BASIC_AUTH"),
], ids=["missing", "default", "short", "no-flower-auth"])
def test_production_refuses_weak_secrets(code, env, named):
    result = start(code, **env)
    assert result.returncode != 0
    assert named in result.stderr and "refusing to start in production" in result.stderr


def test_production_starts_with_proper_secrets():
    result = start(API + "; print('started')", **GOOD)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_a_malformed_rate_limit_stops_the_start_and_names_the_setting():
    """A typo in a limit is a refusal at start, not a 500 on the route that uses it."""
    result = start(API, **GOOD, CHAT_RATE_LIMIT="30 per minut")
    assert result.returncode != 0
    assert "CHAT_RATE_LIMIT" in result.stderr and "not a rate limit" in result.stderr
