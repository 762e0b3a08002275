"""Run the benchmarks: python -m bench.run [--quick] [--only SECTION ...]

Starts its own Redis, database and stacks on free loopback ports, prints each figure as it
is measured, and writes bench/results/latest.json and latest.md.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

SECTIONS = ["pipeline", "streams", "retrieval", "llm"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller loads: a smoke run, not figures to quote")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--out", default=None, help="folder for latest.json and latest.md (default bench/results)")
    args = parser.parse_args()
    from bench.harness import Environment, Results, write_results
    started = time.time()
    results = Results()
    env = Environment()
    failed = []
    try:
        for name in args.only or SECTIONS:
            print(f"== {name}", flush=True)
            try:
                importlib.import_module(f"bench.{name}").run(env, results, quick=args.quick)
            except Exception:  # noqa: BLE001 - report the section and go on with the others
                traceback.print_exc()
                failed.append(name)
    finally:
        env.close()
    table = write_results(results, started, args.out)
    print("\n" + table.read_text())
    if failed:
        print(f"sections that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
