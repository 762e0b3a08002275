"""HTTP load with wrk (bench/wrk/requests.lua), and the median of alternated runs against several servers.

Only 2xx answers count: `rps` is 2xx answers per second; every other answer is in `non2xx`.
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "requests.lua"
RESULT = re.compile(r"RESULT rps=([\d.]+) p50=([\d.]+) p99=([\d.]+) errors=(\d+) non2xx=(\d+) total=(\d+) ok=(\d+)")


def wrk(url: str, lines: list[str], body: str, seconds: int, connections: int, tmp: Path,
        idempotency: str = "") -> dict:
    """One wrk run of `lines` ("METHOD<TAB>PATH<TAB>TOKEN", round robin); with `idempotency`, a fresh
    Idempotency-Key per POST (prefixed with it)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: make bench installs it (apt-get install wrk)")
    path = tmp / f"wrk-{time.monotonic_ns()}.txt"
    path.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "WRK_REQUESTS": str(path), "WRK_BODY": body, "WRK_IDEMPOTENCY": idempotency}
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(WRK_SCRIPT), url], env=env, capture_output=True, text=True, timeout=seconds + 60)
    m = RESULT.search(out.stdout)
    if not m:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    rps, p50, p99, errors, non2xx, total, ok = m.groups()
    statuses = re.search(r"STATUSES (\S*)", out.stdout)
    return {"rps": float(rps), "p50": float(p50), "p99": float(p99), "errors": int(errors),
            "non2xx": int(non2xx), "total": int(total), "ok": int(ok),
            "statuses": statuses.group(1) if statuses else ""}


def compare(targets: dict[str, tuple[str, list[str]]], body: str, seconds: int, runs: int, tmp: Path,
            connections: int = 64, idempotent_posts: bool = False,
            between: Callable[[], None] | None = None) -> dict[str, dict]:
    """`runs` rounds of one wrk run per target ({name: (url, lines)}), alternated; per target the
    run of median rps (with `rps_runs`, every run's rps). `between` runs after each wrk run."""
    done: dict[str, list[dict]] = {name: [] for name in targets}
    for k in range(runs):
        for name, (url, lines) in targets.items():
            nonce = f"b{time.time_ns():x}{k}{name[:3]}" if idempotent_posts else ""
            out = wrk(url, lines, body, seconds, connections, tmp, idempotency=nonce)
            print(f"    {name} run {k + 1}/{runs}: {out['rps']:.1f} req/s (2xx), p50 {out['p50']:.1f} ms, "
                  f"p99 {out['p99']:.1f} ms, non-2xx {out['non2xx']}, errors {out['errors']}, "
                  f"statuses {out['statuses']}", flush=True)
            done[name].append(out)
            if between:
                between()
    summary = {}
    for name, outs in done.items():
        median = statistics.median_low([o["rps"] for o in outs])
        pick = next(o for o in outs if o["rps"] == median)
        summary[name] = {**pick, "rps_runs": [o["rps"] for o in outs],
                         "non2xx_all": sum(o["non2xx"] for o in outs), "errors_all": sum(o["errors"] for o in outs)}
    return summary


def describe(name: str, m: dict) -> str:
    """A note's words for one target's median run."""
    runs = ", ".join(f"{r:.0f}" for r in m["rps_runs"])
    return (f"{name}: runs {runs} req/s, p50 {m['p50']:.1f} ms, p99 {m['p99']:.1f} ms, "
            f"non-2xx {m['non2xx_all']}, socket errors {m['errors_all']}")
