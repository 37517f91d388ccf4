"""
The measuring harness shared by every benchmark: paired A/B runs in fresh processes.

Each sample comes from its own interpreter, started from the same script with
``--worker`` and a JSON description of what to measure; the worker prints one
result line. The two variants of a comparison are run in pairs, in alternating
order (A then B, then B then A), so slow drift of a shared machine (other jobs,
thermal limits, the page cache) lands on both sides alike. A ratio is reported as
the median of the per-pair ratios, with its interquartile range as the spread.
Times are CPU time of the worker (see `now_ns`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

RESULT_PREFIX = "@@bench-result "

#: The clock of every timed sample: CPU time (user + system) of the worker process.
#: Other jobs on a shared machine stretch wall time a lot and CPU time little, and
#: the paired, alternating runs take care of what remains (caches, frequency).
now_ns = time.process_time_ns
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
#: valgrind, for instruction counts (deterministic to ~0.05 %, unlike CPU time on a
#: shared machine); the rows that need it are skipped when it is not installed.
VALGRIND: str | None = shutil.which("valgrind")


@attrs.frozen
class Stats:
    """
    The median and interquartile range of a list of samples.
    """

    median: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        ordered = sorted(values)
        if len(ordered) == 1:
            return cls(ordered[0], ordered[0], ordered[0], 1)
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        return cls(statistics.median(ordered), q1, q3, len(ordered))

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def worker_result(value: Mapping[str, Any]) -> None:
    """
    Print a worker's result (called in the worker process) where `run_worker` finds it.
    """
    sys.stdout.write(RESULT_PREFIX + json.dumps(value) + "\n")
    sys.stdout.flush()


def run_worker(
    script: Path, config: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """
    Run ``script --worker CONFIG`` in a fresh interpreter and return its result.
    """
    full_env = dict(os.environ)
    full_env.pop("PYTHONPATH", None)
    full_env.setdefault("PYTHONHASHSEED", "0")
    if env:
        full_env.update(env)
    completed = subprocess.run(
        [sys.executable, str(script), "--worker", json.dumps(dict(config))],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=str(BENCH_DIR),
        check=False,
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            if completed.returncode != 0:
                break
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise RuntimeError(
        f"benchmark worker {script.name} {json.dumps(dict(config))} failed "
        f"(exit {completed.returncode}):\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}"
    )


def instructions(script: Path, config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> int:
    """
    Instructions executed by one worker (``script --worker CONFIG``) under valgrind's cachegrind.
    """
    assert VALGRIND is not None
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    full_env.pop("PYTHONPATH", None)
    completed = subprocess.run(
        [
            VALGRIND,
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            str(script),
            "--worker",
            json.dumps(dict(config)),
        ],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=str(BENCH_DIR),
        check=False,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", completed.stderr)
    if completed.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind run failed (exit {completed.returncode}):\n{completed.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def instructions_per_step(
    script: Path,
    config: Mapping[str, Any],
    key: str,
    low: int,
    high: int,
    env: Mapping[str, str] | None = None,
    before: Callable[[], None] | None = None,
) -> float:
    """
    Instructions per step of a worker that takes ``config[key]`` steps: the run with
    ``high`` steps minus the run with ``low``, divided by the difference, so that
    start-up, set-up and everything else the two runs share cancel out. ``before``
    runs before each of the two runs (to put back the files a run changed).
    """
    counts = []
    for steps in (None, low, high):
        if before is not None:
            before()
        if steps is None:
            # Once without valgrind: a first run writes the bytecode caches of whatever
            # it imports (the benchmark's own modules, versionload after an edit),
            # which the two counted runs must not differ by.
            _run_plain(script, {**config, key: low}, env)
            continue
        counts.append(instructions(script, {**config, key: steps}, env))
    return (counts[1] - counts[0]) / (high - low)


def _run_plain(script: Path, config: Mapping[str, Any], env: Mapping[str, str] | None) -> None:
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    full_env.pop("PYTHONPATH", None)
    subprocess.run(
        [sys.executable, str(script), "--worker", json.dumps(dict(config))],
        capture_output=True,
        env=full_env,
        cwd=str(BENCH_DIR),
        check=False,
    )


@attrs.frozen
class Comparison:
    """
    Paired samples of two variants of one measurement.
    """

    label: str
    a_name: str
    b_name: str
    a: tuple[float, ...]
    b: tuple[float, ...]
    unit: str = "ms"

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(x / y for x, y in zip(self.a, self.b, strict=True) if y > 0)

    @property
    def ratio(self) -> Stats:
        return Stats.of(self.ratios)

    def row(self) -> dict[str, Any]:
        a, b, r = Stats.of(self.a), Stats.of(self.b), self.ratio
        return {
            "label": self.label,
            "a": self.a_name,
            "b": self.b_name,
            "unit": self.unit,
            "a_median": a.median,
            "a_iqr": a.iqr,
            "b_median": b.median,
            "b_iqr": b.iqr,
            "ratio": r.median,
            "ratio_q1": r.q1,
            "ratio_q3": r.q3,
            "pairs": r.n,
        }


def compare(
    label: str,
    rounds: int,
    sample_a: Callable[[], float],
    sample_b: Callable[[], float],
    *,
    a_name: str = "versionload",
    b_name: str = "stdlib",
    unit: str = "ms",
) -> Comparison:
    """
    Take ``rounds`` pairs of samples, alternating which variant goes first.
    """
    a_values: list[float] = []
    b_values: list[float] = []
    for index in range(rounds):
        if index % 2 == 0:
            a_values.append(sample_a())
            b_values.append(sample_b())
        else:
            b_values.append(sample_b())
            a_values.append(sample_a())
    return Comparison(label, a_name, b_name, tuple(a_values), tuple(b_values), unit)


def format_comparison(comparison: Comparison, target: float | None = None) -> str:
    """
    One line: both medians with their spread, and the ratio (with its spread and the target).
    """
    row = comparison.row()
    unit = row["unit"]
    verdict = ""
    if target is not None:
        verdict = f"  target <= {target:.2f}: {'met' if row['ratio'] <= target else 'MISSED'}"
    return (
        f"  {row['label']:<44} {row['a']} {row['a_median']:9.3f} {unit} (IQR {row['a_iqr']:.3f})"
        f" | {row['b']} {row['b_median']:9.3f} {unit} (IQR {row['b_iqr']:.3f})"
        f" | ratio {row['ratio']:.3f} [{row['ratio_q1']:.3f}-{row['ratio_q3']:.3f}] n={row['pairs']}{verdict}"
    )


def header(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def machine() -> str:
    """
    A one-line description of where the figures were taken.
    """
    return (
        f"python {sys.version.split()[0]} ({sys.implementation.name}), {os.cpu_count()} CPUs, "
        f"{sys.platform}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def is_worker(argv: Sequence[str]) -> dict[str, Any] | None:
    """
    The worker configuration if this process was started as a worker, else None.
    """
    if len(argv) >= 3 and argv[1] == "--worker":
        config: dict[str, Any] = json.loads(argv[2])
        return config
    return None


def ensure_importable() -> None:
    """
    Make the versionload checkout importable in a worker even when it is not installed.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(1, str(ROOT))


def script_main(
    argv: Sequence[str],
    doc: str | None,
    worker: Callable[[dict[str, Any]], None],
    run: Callable[[bool], object],
) -> int:
    """
    The ``main`` of every ``bench_*.py``: a worker sample when started with ``--worker``,
    else the benchmark itself (``--quick`` for small sizes).
    """
    import argparse

    config = is_worker(argv)
    if config is not None:
        worker(config)
        return 0
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    args = parser.parse_args(argv[1:])
    print(machine())
    run(args.quick)
    return 0
