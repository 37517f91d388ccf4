"""
Import overhead of the hook: a generated tree of modules, and a real installed package.

Each sample is one fresh interpreter that imports versionload (in both variants, so
only the hook differs), optionally calls ``versionload.install()``, and times the one
``import`` statement of the tree's top package, which imports every module in it.
"Cold" runs find no bytecode cache and compile every module, "warm" runs load the
``.pyc`` files an installer would have written.

"Under run --watch" repeats the warm import as ``versionload run --watch`` sets it up:
the hook, a watcher on one top-level subpackage (about 100 modules) and the command's
logging at DEBUG (JSON lines, here to /dev/null), against no hook at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h
from _modules import compile_tree, write_tree

SCRIPT = Path(__file__).resolve()
TARGET = 1.02
WATCH_TARGET = 1.05  # imports under `versionload run --watch` / no hook
REAL_WORLD_TARGET = 1.01  # instructions of `import IPython` / `rich` / `hypothesis`, hook / none
REAL_WORLD = ("IPython", "rich", "hypothesis")
PACKAGE = "vlbench_tree"
VALGRIND: str | None = shutil.which("valgrind")


def worker(config: dict[str, Any]) -> None:
    import importlib

    h.ensure_importable()
    import versionload

    if config.get("path"):
        sys.path.insert(0, config["path"])
    if config["hook"]:
        versionload.install()
    watcher = None
    if config.get("watch"):
        # What `versionload run --watch DIR` sets up before it runs the program.
        from versionload._live.cli import _configure_logging
        from versionload._live.watch import make_watcher

        watcher = make_watcher(
            [config["watch"]],
            cascade=False,
            update=None,
            tracker=versionload.default_tracker(),
            debounce=0.01,
            force_polling=False,
            on_change=None,
        )
        _configure_logging(True, watcher.roots, os.devnull)
        watcher.start()
    if config.get("count") is not None:
        # Under valgrind: the whole process is counted, so a run that stops here gives
        # the baseline to subtract, and os._exit leaves interpreter shutdown out.
        if config["count"]:
            importlib.import_module(config["module"])
        sys.stdout.flush()
        os._exit(0)
    already = len(sys.modules)
    started, started_wall = h.now_ns(), time.perf_counter_ns()
    importlib.import_module(config["module"])
    elapsed, wall = h.now_ns() - started, time.perf_counter_ns() - started_wall
    tracked = len(versionload.default_tracker().tracked())
    if watcher is not None:
        watched = watcher.watched_modules
        watcher.stop()
        if not watched:
            raise RuntimeError("the watcher indexed none of the imported modules")
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
        seen["watch" if config.get("watch") else str(config["hook"])] = result
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


def measure_instructions(
    label: str, config: dict[str, Any], env: dict[str, str], target: float = TARGET
) -> dict[str, Any] | None:
    """
    The import's instructions with the hook / without, each minus its own baseline run.
    """
    counts = {}
    for hook in (True, False):
        # The baseline of a variant is the same set-up (hook, watcher) without the import.
        variant = config if hook else {key: value for key, value in config.items() if key != "watch"}
        total = h.instructions(SCRIPT, {**variant, "hook": hook, "count": True}, env)
        base = h.instructions(SCRIPT, {**variant, "hook": hook, "count": False}, env)
        counts[hook] = total - base
    ratio = counts[True] / counts[False]
    verdict = "met" if ratio <= target else "MISSED"
    name = "watch" if config.get("watch") else "hook"
    print(
        f"  {label:<44} {name} {counts[True] / 1e6:9.1f} M instr | no hook {counts[False] / 1e6:9.1f} M instr"
        f" | ratio {ratio:.4f} (instructions)  target <= {target:.2f}: {verdict}",
        flush=True,
    )
    row = {"label": label, "unit": "instructions", name: counts[True], "no_hook": counts[False]}
    return {**row, "ratio": ratio}


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
        if not quick and VALGRIND is not None:
            # CPU-time ratios on a shared 2-core machine cannot resolve less than ~5 %;
            # instruction counts repeat within ~0.05 %.
            config = {"module": PACKAGE, "path": str(warm)}
            row = measure_instructions(f"warm: {count} modules, .pyc", config, no_pyc)
            if row is not None:
                rows.append({**row, "target": TARGET})
        elif not quick:
            print("  (instruction counts skipped: valgrind is not installed)")
        # The watcher needs every loaded module's path under its roots checked: an
        # import outside them must stay on the hook's cheap path.
        config = {"module": PACKAGE, "path": str(warm), "watch": str(warm / PACKAGE / "pkg0")}
        label = f"imports under run --watch: {count} modules"
        seen = {}
        comparison = h.compare(
            label,
            rounds,
            _sampler({**config, "hook": True}, no_pyc, seen),
            _sampler({**config, "hook": False, "watch": None}, no_pyc, seen),
            a_name="watch",
            b_name="no hook",
        )
        print(h.format_comparison(comparison, WATCH_TARGET), flush=True)
        rows.append({**comparison.row(), "target": WATCH_TARGET})
        if not quick and VALGRIND is not None:
            row = measure_instructions(label, config, no_pyc, WATCH_TARGET)
            if row is not None:
                rows.append({**row, "target": WATCH_TARGET})
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
    if not quick and VALGRIND is not None:
        # Warm imports of installed packages (their .pyc written by the installer), counted.
        # What a worker has imported before it times anything, asked of a fresh interpreter.
        preloaded = subprocess.run(
            [sys.executable, "-c", "import sys, versionload; print(' '.join(sys.modules))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for module in REAL_WORLD:
            if module in preloaded:
                # structlog imports rich when it is installed: a worker has it before timing.
                print(f"  (real-world instructions skipped: versionload's dependencies import {module})")
                continue
            try:
                __import__(module)
            except ImportError:
                print(f"  (real-world instructions skipped: {module} is not installed)")
                continue
            row = measure_instructions(
                f"real world: import {module}", {"module": module}, {}, REAL_WORLD_TARGET
            )
            if row is not None:
                rows.append({**row, "target": REAL_WORLD_TARGET})
    return rows


def main(argv: list[str]) -> int:
    return h.script_main(argv, __doc__, worker, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
