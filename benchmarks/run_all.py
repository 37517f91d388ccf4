"""
Run every versionload benchmark and print the figures (see README.md in this folder).

    python benchmarks/run_all.py            # full mode: the figures in README.md (~10 min)
    python benchmarks/run_all.py --quick    # small sizes, a few seconds (CI runs this)
    python benchmarks/run_all.py --only reload memory --json results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h
import bench_events
import bench_gate
import bench_import
import bench_memory
import bench_reload
import bench_watch

BENCHMARKS = {
    "import": bench_import.run,
    "reload": bench_reload.run,
    "memory": bench_memory.run,
    "events": bench_events.run,
    "gate": bench_gate.run,
    "watch": bench_watch.run,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    print(h.machine(), "(quick mode)" if args.quick else "(full mode)", flush=True)
    started = time.monotonic()
    results: dict[str, Any] = {"machine": h.machine(), "quick": args.quick}
    for name, run in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        results[name] = run(args.quick)
    print(f"\nall benchmarks done in {time.monotonic() - started:.1f} s", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
