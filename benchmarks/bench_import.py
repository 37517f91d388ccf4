"""
Import overhead of the hook: a generated tree of modules, and a real installed package.

Each sample is one fresh interpreter that imports versionload (in both variants, so
only the hook differs), optionally calls ``versionload.install()``, and times the one
``import`` statement of the tree's top package, which imports every module in it.
"Cold" runs find no bytecode cache and compile every module, "warm" runs load the
``.pyc`` files an installer would have written.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h
from _modules import compile_tree, write_tree

SCRIPT = Path(__file__).resolve()
TARGET = 1.02
PACKAGE = "vlbench_tree"


def worker(config: dict[str, Any]) -> None:
    import importlib

    h.ensure_importable()
    import versionload

    if config.get("path"):
        sys.path.insert(0, config["path"])
    if config["hook"]:
        versionload.install()
    already = len(sys.modules)
    started, started_wall = h.now_ns(), time.perf_counter_ns()
    importlib.import_module(config["module"])
    elapsed, wall = h.now_ns() - started, time.perf_counter_ns() - started_wall
    tracked = len(versionload.default_tracker().tracked())
    h.worker_result(
        {
            "ms": elapsed / 1e6,
            "wall_ms": wall / 1e6,
            "tracked": tracked,
            "imported": len(sys.modules) - already,
        }
    )


def _sampler(config: dict[str, Any], env: dict[str, str], seen: dict[str, Any]) -> Any:
    def sample() -> float:
        result = h.run_worker(SCRIPT, config, env)
        seen[str(config["hook"])] = result
        return float(result["ms"])

    return sample


def measure(
    label: str, config: dict[str, Any], rounds: int, env: dict[str, str]
) -> tuple[h.Comparison, dict[str, Any]]:
    seen: dict[str, Any] = {}
    comparison = h.compare(
        label,
        rounds,
        _sampler({**config, "hook": True}, env, seen),
        _sampler({**config, "hook": False}, env, seen),
        a_name="hook",
        b_name="no hook",
    )
    return comparison, seen


def run(quick: bool) -> list[dict[str, Any]]:
    modules = 120 if quick else 2000
    rounds = 3 if quick else 15
    rows: list[dict[str, Any]] = []
    h.header(f"import overhead ({modules} generated modules; real-world package)")
    with tempfile.TemporaryDirectory(prefix="vlbench-import-") as tmp:
        cold, warm = Path(tmp, "cold"), Path(tmp, "warm")
        count = write_tree(cold, PACKAGE, modules)
        shutil.copytree(cold, warm)
        compile_tree(warm)
        no_pyc = {"PYTHONDONTWRITEBYTECODE": "1"}
        for label, root in (
            (f"cold: {count} modules, no .pyc", cold),
            (f"warm: {count} modules, .pyc", warm),
        ):
            comparison, seen = measure(label, {"module": PACKAGE, "path": str(root)}, rounds, no_pyc)
            tracked = seen["True"]["tracked"]
            print(h.format_comparison(comparison, TARGET), flush=True)
            if tracked < count:
                raise RuntimeError(f"the hook tracked only {tracked} of {count} modules")
            rows.append({**comparison.row(), "target": TARGET, "tracked": tracked})
        if (Path(tmp) / "cold" / PACKAGE / "__pycache__").exists():
            raise RuntimeError("the cold tree got a bytecode cache; cold figures would be warm")
    for module in ("http.server",) if quick else ("hypothesis", "http.server"):
        try:
            __import__(module)
        except ImportError:
            print(f"  (real-world import skipped: {module} is not installed)")
            continue
        comparison, seen = measure(f"real world: import {module}", {"module": module}, rounds, {})
        imported = seen["False"]["imported"]
        print(h.format_comparison(comparison, TARGET) + f"  ({imported} modules imported)", flush=True)
        rows.append({**comparison.row(), "target": TARGET, "tracked": seen["True"]["tracked"]})
    return rows


def main(argv: list[str]) -> int:
    return h.script_main(argv, __doc__, worker, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
