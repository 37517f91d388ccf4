"""
What the structlog event of a reload costs: reloads with the event delivered against
reloads in which nobody listens (so no event is built at all).

Logging configurations compared, each in its own fresh interpreter:

- ``silent``: structlog filters below CRITICAL and nobody subscribed: no event is built.
- ``default``: structlog never configured: its default console renderer prints
  each event to stdout (here a pipe), as for a program that did not set up logging.
- ``json``: timestamp, level and ``JSONRenderer`` to a file, a typical production set-up.

The source is rewritten (same size, later mtime) before each reload, so every event
carries a real diff: one changed constant.

The workers then time rollbacks between the last two versions with the same logging:
the row "rollback / edited reload, events rendered as JSON" is a rollback (its
``module.rolled_back`` event rendered) against one reload of edited source. In full
mode, when valgrind is installed, that row is also taken as instruction counts: per
rollback (runs with 0 and 100 rollbacks) against per reload (runs with 1 and 4
reloads), source texts made before counting, garbage collection off during the
operations and run once after them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import _harness as h
from _modules import module_with_names

SCRIPT = Path(__file__).resolve()
ROLLBACK_TARGET = 0.01  # of one reload of edited source, at 1,000 names, events as JSON


def worker(config: dict[str, Any]) -> None:
    import importlib
    import logging

    h.ensure_importable()
    import structlog

    import versionload

    mode = config["mode"]
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker
    if mode == "silent":
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    elif mode == "json":
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.PrintLoggerFactory(file=sink),
            cache_logger_on_first_use=True,
        )
    path = Path(config["path"])
    name = config["module"]
    source = path / f"{name}.py"
    sys.path.insert(0, str(path))
    versionload.install()
    module = importlib.import_module(name)
    base_mtime = int(source.stat().st_mtime)
    if config.get("count") is not None:
        _count(config, module, source, base_mtime)
    times = []
    for step in range(1, config["reloads"] + 1):
        source.write_text(module_with_names(config["names"], edit=step))
        os.utime(source, (base_mtime + step, base_mtime + step))
        started = h.now_ns()
        versionload.reload(module)
        times.append((h.now_ns() - started) / 1e6)
    assert module.EDIT == config["reloads"]
    numbers = [version.number for version in versionload.history(module)]
    rollbacks = []
    for index in range(config["reloads"]):
        started = h.now_ns()
        versionload.rollback(module, to=numbers[-2] if index % 2 == 0 else numbers[-1])
        rollbacks.append((h.now_ns() - started) / 1e6)
    h.worker_result({"ms": h.Stats.of(times[1:]).median, "rollback_ms": h.Stats.of(rollbacks[1:]).median})


def _count(config: dict[str, Any], module: Any, source: Path, base_mtime: int) -> None:
    """
    Under valgrind: ``count`` edited reloads, then ``rollbacks`` rollbacks, then exit.
    """
    import gc

    import versionload

    texts = [module_with_names(config["names"], edit=step) for step in range(1, config["count_max"] + 1)]
    gc.collect()
    gc.disable()
    for step in range(1, config["count"] + 1):
        source.write_text(texts[step - 1])
        os.utime(source, (base_mtime + step, base_mtime + step))
        versionload.reload(module)
    numbers = [version.number for version in versionload.history(module)]
    for index in range(config["rollbacks"]):
        versionload.rollback(module, to=numbers[-2] if index % 2 == 0 else numbers[-1])
    gc.collect()
    sys.stdout.flush()
    os._exit(0)


def _instruction_row(directory: Path, module: str, names: int) -> dict[str, Any]:
    """
    Instructions of a rollback against those of an edited reload, events rendered as JSON.
    """

    def fresh() -> None:
        # Every counted run starts from the same files: the original source, no cache.
        (directory / f"{module}.py").write_text(module_with_names(names))
        shutil.rmtree(directory / "__pycache__", ignore_errors=True)

    config = {"path": str(directory), "module": module, "names": names, "mode": "json", "count_max": 4}
    reload = h.instructions_per_step(SCRIPT, {**config, "rollbacks": 0}, "count", 1, 4, before=fresh)
    rollback = h.instructions_per_step(SCRIPT, {**config, "count": 2}, "rollbacks", 0, 100, before=fresh)
    ratio = rollback / reload
    target = ROLLBACK_TARGET if names == 1000 else None
    verdict = "" if target is None else f"  target <= {target:.2f}: {'met' if ratio <= target else 'MISSED'}"
    label = f"rollback / edited reload, JSON events, {names} names"
    print(
        f"  {label:<52} rollback {rollback / 1e6:7.3f} M instr"
        f" | reload {reload / 1e6:8.3f} M instr | ratio {ratio:.4f} (instructions){verdict}",
        flush=True,
    )
    return {
        "label": f"rollback / edited reload, events rendered as JSON, {names} names (instructions)",
        "unit": "instructions",
        "a": "rollback",
        "b": "reload",
        "a_value": rollback,
        "b_value": reload,
        "ratio": ratio,
        "target": target,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    sizes = (10,) if quick else (10, 1000)
    rounds = 2 if quick else 11
    reloads = 6 if quick else 30
    rows: list[dict[str, Any]] = []
    h.header("events: cost of the reload event (delivered vs nobody listening)")
    with tempfile.TemporaryDirectory(prefix="vlbench-events-") as tmp:
        for names in sizes:
            for mode in ("default", "json"):
                directory = Path(tmp, f"{mode}-{names}")
                directory.mkdir()
                module = f"vlbench_events_{names}"
                (directory / f"{module}.py").write_text(module_with_names(names))
                config = {"path": str(directory), "module": module, "names": names, "reloads": reloads}

                samples: dict[str, list[dict[str, Any]]] = {"default": [], "json": [], "silent": []}

                def sampler(mode: str, config: dict[str, Any] = config, samples: Any = samples) -> Any:
                    def sample() -> float:
                        result = h.run_worker(SCRIPT, {**config, "mode": mode})
                        samples[mode].append(result)
                        return float(result["ms"])

                    return sample

                comparison = h.compare(
                    f"reload + event ({mode}), {names} names",
                    rounds,
                    sampler(mode),
                    sampler("silent"),
                    a_name=mode,
                    b_name="silent",
                )
                row = comparison.row()
                cost_us = (row["a_median"] - row["b_median"]) * 1000
                print(
                    h.format_comparison(comparison) + f"  => event ~{cost_us:.0f} us per reload", flush=True
                )
                rows.append({**row, "event_us": cost_us})
                if mode != "json":
                    continue
                rollback = h.Comparison(
                    f"rollback / edited reload, events rendered as JSON, {names} names",
                    "rollback",
                    "reload",
                    tuple(r["rollback_ms"] for r in samples["json"]),
                    tuple(r["ms"] for r in samples["json"]),
                )
                target = ROLLBACK_TARGET if names == 1000 else None
                print(h.format_comparison(rollback, target), flush=True)
                rows.append({**rollback.row(), "target": target})
                if not quick and h.VALGRIND is not None:
                    rows.append(_instruction_row(directory, module, names))
    return rows


def main(argv: list[str]) -> int:
    return h.script_main(argv, __doc__, worker, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
