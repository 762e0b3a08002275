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
    """One measured figure beside its baselines, all from the same run.

    `baseline` is the bare one (a bare endpoint, raw Celery, the bare relay, a library alone);
    `essential` the essential one (bench/essential_app.py: only the work the endpoint cannot
    avoid). `versus` says which of the two the target is against; `ratio` is against that one.
    """

    section: str
    name: str
    value: float
    unit: str
    baseline: float | None = None      # the same measure for the bare baseline, in the same run
    baseline_name: str | None = None
    target: str | None = None          # e.g. ">= 0.7 x essential", "< 25 ms"
    met: bool | None = None
    note: str = ""
    essential: float | None = None     # the same measure for the essential baseline, in the same run
    essential_name: str | None = None
    versus: str = "baseline"           # "baseline" or "essential": what the target compares with

    @staticmethod
    def _over(value: float, base: float | None) -> float | None:
        return None if base in (None, 0) else value / base

    @property
    def bare_ratio(self) -> float | None:
        """The figure over its bare baseline."""
        return self._over(self.value, self.baseline)

    @property
    def essential_ratio(self) -> float | None:
        """The figure over its essential baseline."""
        return self._over(self.value, self.essential)

    @property
    def ratio(self) -> float | None:
        """The figure over the baseline its target is against."""
        return self.essential_ratio if self.versus == "essential" else self.bare_ratio


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)

    def add(self, fig: Figure) -> Figure:
        """Record a figure and print it with its baselines."""
        self.figures.append(fig)
        mark = "" if fig.met is None else (" [target met]" if fig.met else " [TARGET MISSED]")
        base = f"; baseline {fig.baseline_name}: {fig.baseline:.4g}" if fig.baseline is not None else ""
        base += f"; essential {fig.essential_name}: {fig.essential:.4g}" if fig.essential is not None else ""
        ratio = f" = {fig.ratio:.2f} x {fig.versus}" if fig.ratio is not None else ""
        print(f"  {fig.section} / {fig.name}: {fig.value:.4g} {fig.unit}{base}{ratio}{mark}", flush=True)
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


# Production settings, with the per-user limits switched on but raised above what the load sends.
RAISED = "1000000/minute"
PRODUCTION = {"APP_ENV": "production", "RATELIMIT_ENABLED": "true", "CHAT_RATE_LIMIT": RAISED,
              "TTS_RATE_LIMIT": RAISED, "UPLOAD_RATE_LIMIT": RAISED, "SEARCH_RATE_LIMIT": RAISED,
              "RATELIMIT_AUTH": RAISED, "MAX_ACTIVE_JOBS_PER_KIND": "1000000", "LOG_JSON": "false"}


class Environment:
    """Redis + SQLite + settings for one benchmark run; `close()` removes everything."""

    def __init__(self) -> None:
        from devtools.stack import start_redis
        self.tmp = Path(tempfile.mkdtemp(prefix="mentor-bench-"))
        self.redis_proc, self.redis_url = start_redis(self.tmp / "redis")
        self.env = {
            **PRODUCTION, "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
            "JWT_SECRET_KEY": "bench-jwt-" + uuid.uuid4().hex * 2, "REDIS_URL": self.redis_url,
            "FLOWER_BASIC_AUTH": "bench:" + uuid.uuid4().hex,
            "DATABASE_URL": f"sqlite:///{self.tmp / 'bench.db'}", "STORAGE_DIR": str(self.tmp / "storage"),
            "LOG_LEVEL": "WARNING", "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": "9",
        }
        self._password_hash = None
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
        """A user made directly in the database, and an access token for it (a sign-in session of its own)."""
        return self.users(1, role)[0]

    def users(self, n: int, role: str = "student") -> list[tuple[str, str]]:
        """`n` users made directly in the database, each with an access token of its own sign-in session."""
        from flask_jwt_extended import create_access_token

        from api.services.passwords import hash_password
        from shared.database import db, write_tx
        from shared.models import User
        self._password_hash = self._password_hash or hash_password("x" * 12)  # argon2: once, not per user
        with self.app.app_context():
            with write_tx():
                made = [User(email=f"bench-{uuid.uuid4().hex[:12]}@example.com", password_hash=self._password_hash,
                             role=role) for _ in range(n)]
                db.session.add_all(made)
            return [(user.id, create_access_token(identity=user.id, expires_delta=False,
                                                  additional_claims={"ver": 0, "sid": uuid.uuid4().hex}))
                    for user in made]

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
    data = {"meta": meta, "figures": [{**asdict(f), "ratio": f.ratio, "bare_ratio": f.bare_ratio,
                                       "essential_ratio": f.essential_ratio} for f in results.figures]}
    (folder / "latest.json").write_text(json.dumps(data, indent=2))
    lines = [f"Benchmarks of {meta['date']} on {meta['machine']['cpus']} CPUs ({meta['seconds']} s)", "",
             "Each ratio is the figure over that baseline; the target names the baseline it is against.", "",
             "| section | figure | value | bare baseline | x bare | essential baseline | x essential | target | met |",
             "|---|---|---|---|---|---|---|---|---|"]

    def cell(value: float | None, name: str | None) -> str:
        return f"{value:.4g} ({name})" if value is not None else "-"

    def times(ratio: float | None) -> str:
        return f"{ratio:.2f}" if ratio is not None else "-"

    for f in results.figures:
        met = "-" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(f"| {f.section} | {f.name} | {f.value:.4g} {f.unit} | {cell(f.baseline, f.baseline_name)} "
                     f"| {times(f.bare_ratio)} | {cell(f.essential, f.essential_name)} | {times(f.essential_ratio)} "
                     f"| {f.target or '-'} | {met} |")
    notes = [f"- {f.section} / {f.name}: {f.note}" for f in results.figures if f.note]
    if notes:
        lines += ["", "Notes:", *notes]
    table = "\n".join(lines) + "\n"
    (folder / "latest.md").write_text(table)
    return folder / "latest.md"
