"""The benchmark harness: an isolated environment, a stack on free ports, and the results table.

`Environment` starts a Redis server and a SQLite database of its own in a temp folder, sets
the settings for this process and for the stacks it starts, and migrates. Sections record
`Figure`s; `write_results` writes bench/results/latest.json and latest.md.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass
class Figure:
    section: str
    name: str
    value: float
    unit: str
    baseline: float | None = None      # the same measure for the baseline, in the same run
    baseline_name: str | None = None
    target: str | None = None          # e.g. ">= 0.5 x baseline", "< 25 ms"
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        mark = "" if fig.met is None else (" [target met]" if fig.met else " [TARGET MISSED]")
        base = f" (baseline {fig.baseline_name}: {fig.baseline:.3g})" if fig.baseline is not None else ""
        print(f"  {fig.section} / {fig.name}: {fig.value:.4g} {fig.unit}{base}{mark}", flush=True)
        return fig


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {"p50": statistics.median(ms), "p99": percentile(ms, 99), "n": len(ms)}


class Environment:
    """Redis + SQLite + settings for one benchmark run; `close()` removes everything."""

    def __init__(self) -> None:
        from devtools.stack import start_redis
        self.tmp = Path(tempfile.mkdtemp(prefix="mentor-bench-"))
        self.redis_proc, self.redis_url = start_redis(self.tmp / "redis")
        self.env = {
            "APP_ENV": "development", "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
            "JWT_SECRET_KEY": "bench-jwt-" + uuid.uuid4().hex * 2, "REDIS_URL": self.redis_url,
            "DATABASE_URL": f"sqlite:///{self.tmp / 'bench.db'}", "STORAGE_DIR": str(self.tmp / "storage"),
            "LOG_LEVEL": "WARNING", "RATELIMIT_ENABLED": "false", "MAX_ACTIVE_JOBS_PER_KIND": "100000",
            "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": "9",
        }
        os.environ.update(self.env)
        os.chdir(self.tmp)
        from flask_migrate import upgrade

        from api import create_app
        self.app = create_app()
        with self.app.app_context():
            upgrade()
        self.stacks = []

    def stack(self, name: str, **env: str):
        from devtools.stack import Stack
        s = Stack(self.tmp, name, redis_url=self.redis_url, **env)
        self.stacks.append(s)
        return s

    def user(self, role: str = "student") -> tuple[str, str]:
        """A user made directly in the database, and an access token for it."""
        from flask_jwt_extended import create_access_token

        from api.services.passwords import hash_password
        from shared.database import db, write_tx
        from shared.models import User
        with self.app.app_context():
            with write_tx():
                user = User(email=f"bench-{uuid.uuid4().hex[:10]}@example.com", password_hash=hash_password("x" * 12),
                            role=role)
                db.session.add(user)
            token = create_access_token(identity=user.id, additional_claims={"ver": 0, "rjti": "bench"},
                                        expires_delta=False)
            return user.id, token

    def close(self) -> None:
        for s in self.stacks:
            s.close()
        self.redis_proc.terminate()
        self.redis_proc.wait(10)
        os.chdir(ROOT)
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_results(results: Results, started: float, out: str | None = None) -> Path:
    folder = Path(out) if out else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(time.time() - started, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    data = {"meta": meta, "figures": [{**asdict(f), "ratio": f.ratio} for f in results.figures]}
    (folder / "latest.json").write_text(json.dumps(data, indent=2))
    lines = [f"Benchmarks of {meta['date']} on {meta['machine']['cpus']} CPUs ({meta['seconds']} s)", "",
             "| section | figure | value | baseline | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    for f in results.figures:
        base = f"{f.baseline:.4g} ({f.baseline_name})" if f.baseline is not None else "-"
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
        met = "-" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(f"| {f.section} | {f.name} | {f.value:.4g} {f.unit} | {base} | {ratio} "
                     f"| {f.target or '-'} | {met} |")
    notes = [f"- {f.section} / {f.name}: {f.note}" for f in results.figures if f.note]
    if notes:
        lines += ["", "Notes:", *notes]
    table = "\n".join(lines) + "\n"
    (folder / "latest.md").write_text(table)
    return folder / "latest.md"
