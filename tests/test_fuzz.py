"""Schemathesis over /api/openapi.json, as a signed-up user (Bearer token).

Every documented operation of the in-process app gets generated requests (valid and
invalid) against the real app, Redis, worker and database; then the schemathesis CLI runs
its stateful phase against the API under gunicorn, chaining operations through the links it
infers from the schema (a chat's job_id into /api/jobs/{job_id}, a conversation_id into its
history, a file's id into its routes...).
Checks: no 5xx, and every response conforms to the schema (status code documented, content
type, body). Bounded in examples so the whole suite takes about two minutes.

Left out: DELETE /api/user/account and POST /api/auth/logout, whose effects (no account, a
revoked token) would end the run for every operation after them; test_user_admin and
test_auth cover them.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import bearer, sign_up

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SSE_OPERATION = "GET /api/jobs/{job_id}/events"
EXCLUDED_PATHS = "^/api/(user/account|auth/logout)$"
EXAMPLES = 25
STATEFUL_EXAMPLES = 100
HYPOTHESIS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate])


@pytest.fixture(scope="module")
def api_schema(app, worker):
    loaded = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    return loaded.exclude(method="DELETE", path="/api/user/account").exclude(method="POST", path="/api/auth/logout")


@pytest.fixture(scope="module")
def fuzz_user(app, smtp, worker):
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = "10.200.0.1"
    return sign_up(c, smtp)


def test_every_operation_answers_within_its_schema(api_schema, fuzz_user):
    """Each operation on its own, with valid and with invalid data: failures are gathered, then reported."""
    headers = bearer(fuzz_user["access_token"])
    failures, ran = {}, {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            calls = []

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, **HYPOTHESIS)
            def check(case):
                calls.append(1)  # noqa: B023 - run below, within this iteration
                response = case.call(headers=headers)
                case.validate_response(response, checks=CHECKS)
            try:
                check()
            except Unsatisfiable:  # nothing invalid to send (no parameters, no body)
                continue
            except BaseException as exc:  # noqa: BLE001 - schemathesis raises a BaseExceptionGroup: gathered below
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:1500]
            ran[f"{operation.label} ({mode.value})"] = len(calls)
    print(f"\n{sum(ran.values())} generated requests over {len(ran)} operation/mode pairs")
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def test_chained_operations_answer_within_their_schemas(live_server, fuzz_user, tmp_path):
    """The schemathesis CLI's stateful phase against the API under gunicorn: sequences of calls
    linked by the schema (what one answers, the next takes), as a signed-in user."""
    cli = Path(sys.executable).with_name("schemathesis")
    cmd = [str(cli), "run", f"{live_server}/api/openapi.json", "--phases", "stateful",
           "--exclude-path-regex", EXCLUDED_PATHS,
           "--header", f"Authorization: Bearer {fuzz_user['access_token']}",
           "--checks", ",".join(c.__name__ for c in CHECKS),
           "--max-examples", str(STATEFUL_EXAMPLES), "--seed", "20261126",
           "--request-timeout", "20", "--workers", "1",
           "--no-color", "--suppress-health-check", "all", "--warnings", "off"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    out = run.stdout + run.stderr
    print("\n" + out[-3000:])
    assert run.returncode == 0, out[-12000:]
