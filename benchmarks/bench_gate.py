"""
What the drain gate costs: a `versionload.serving()` section around a call against the
plain call, and the time a reload takes when requests are in flight against an idle one.

- ``section``: ``with versionload.serving(): f()`` and a ``@versionload.serving()``
  function, each against calling ``f()`` directly; ``f`` does nothing, so the
  difference is the section's own cost (uncontended: one thread). CPU time.
- ``reload latency``: threads run back-to-back "requests" (each a section of a given
  length, sleeping) while the main thread reloads a module; a reload waits for the
  requests in flight to end. Compared with the same reload when no request runs.
  Wall time, since waiting is the point.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _harness as h
from _modules import module_with_names

SCRIPT = Path(__file__).resolve()


def _section_worker(config: dict[str, Any]) -> None:
    h.ensure_importable()
    import versionload

    calls = config["calls"]
    shape = config["shape"]

    def f() -> None:
        pass

    serving = versionload.serving()
    decorated = versionload.serving()(f)
    # The loop itself is timed too, the same on both sides: only the difference counts.
    started = h.now_ns()
    if shape == "plain":
        for _ in range(calls):
            f()
    elif shape == "with":
        for _ in range(calls):
            with serving:
                f()
    else:
        for _ in range(calls):
            decorated()
    h.worker_result({"us": (h.now_ns() - started) / 1e3 / calls})


def _latency_worker(config: dict[str, Any]) -> None:
    import importlib

    h.ensure_importable()
    import versionload

    path = Path(config["path"])
    name = config["module"]
    source = path / f"{name}.py"
    sys.path.insert(0, str(path))
    versionload.install()
    module = importlib.import_module(name)
    stop = threading.Event()
    request_s = config["request_ms"] / 1000

    def serve() -> None:
        while not stop.is_set():
            with versionload.serving():
                time.sleep(request_s)

    threads = [threading.Thread(target=serve, daemon=True) for _ in range(config["threads"])]
    for each in threads:
        each.start()
    base_mtime = int(source.stat().st_mtime)
    times = []
    for step in range(1, config["reloads"] + 1):
        source.write_text(module_with_names(config["names"], edit=step))
        os.utime(source, (base_mtime + step, base_mtime + step))
        time.sleep(request_s / 3)  # land the reload at some point inside the requests
        started = time.perf_counter_ns()
        versionload.reload(module)
        times.append((time.perf_counter_ns() - started) / 1e6)
    stop.set()
    for each in threads:
        each.join(10)
    assert module.EDIT == config["reloads"]
    h.worker_result({"ms": h.Stats.of(times[1:]).median})


def worker(config: dict[str, Any]) -> None:
    if config["kind"] == "section":
        _section_worker(config)
    else:
        _latency_worker(config)


def run(quick: bool) -> list[dict[str, Any]]:
    rounds = 2 if quick else 11
    calls = 20_000 if quick else 1_000_000
    rows: list[dict[str, Any]] = []
    h.header("gate: cost of a serving() section, and the latency a reload adds under load")
    for shape in ("with", "decorated"):
        config = {"kind": "section", "calls": calls}

        def sampler(shape: str, config: dict[str, Any] = config) -> Any:
            return lambda: float(h.run_worker(SCRIPT, {**config, "shape": shape})["us"])

        comparison = h.compare(
            f"call in a section ({shape})",
            rounds,
            sampler(shape),
            sampler("plain"),
            a_name="section",
            b_name="plain",
            unit="us",
        )
        row = comparison.row()
        cost_ns = (row["a_median"] - row["b_median"]) * 1000
        print(h.format_comparison(comparison) + f"  => ~{cost_ns:.0f} ns per section", flush=True)
        rows.append({**row, "section_ns": cost_ns})
    reloads = 4 if quick else 20
    request_ms = 5.0 if quick else 20.0
    with tempfile.TemporaryDirectory(prefix="vlbench-gate-") as tmp:
        module = "vlbench_gate"
        (Path(tmp) / f"{module}.py").write_text(module_with_names(100))
        base = {
            "kind": "latency",
            "path": tmp,
            "module": module,
            "names": 100,
            "reloads": reloads,
            "request_ms": request_ms,
        }

        def latency(threads: int) -> Any:
            return lambda: float(h.run_worker(SCRIPT, {**base, "threads": threads})["ms"])

        comparison = h.compare(
            f"reload, 4 threads of {request_ms:g} ms requests",
            rounds,
            latency(4),
            latency(0),
            a_name="in flight",
            b_name="idle",
        )
        row = comparison.row()
        added = row["a_median"] - row["b_median"]
        print(
            h.format_comparison(comparison)
            + f"  => waits ~{added:.1f} ms (a request lasts {request_ms:g} ms)",
            flush=True,
        )
        rows.append({**row, "added_ms": added})
    return rows


def main(argv: list[str]) -> int:
    return h.script_main(argv, __doc__, worker, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
