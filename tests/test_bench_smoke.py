"""The benchmark harness runs end to end (a quick pipeline pass); its figures are not checked here."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is missing: make bench installs it (apt-get install wrk)")
def test_bench_quick_pipeline_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--only", "pipeline", "--out", str(tmp_path)],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    names = {f["name"] for f in data["figures"]}
    assert {"enqueue POST /api/chat/send", "polling GET /api/jobs/<id>", "worker throughput, no-op jobs"} <= names
    assert all(f["baseline"] for f in data["figures"] if f["name"].startswith(("enqueue", "polling", "worker")))
    assert "| section | figure |" in (tmp_path / "latest.md").read_text()
