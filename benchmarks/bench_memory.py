"""
Memory: the bytes a recorded version keeps against a plain shallow copy of the module
dict, and whether many reloads with the default retention keep memory flat.

Both are measured with ``tracemalloc`` in fresh interpreters.

- Per version: K versions of one module are recorded (``max_versions`` above K, so
  none is pruned) and the growth of traced memory is divided by K; the baseline is
  K copies ``dict(module.__dict__)`` kept in a list. The module's objects themselves
  are shared by both and not counted: only what a version adds.
- Flat: N reloads with the default ``max_versions`` (10); traced memory after the
  first tenth of them (at least 500: caches warm up) is compared with the end.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import _harness as h
from _modules import module_with_names

SCRIPT = Path(__file__).resolve()
VERSION_TARGET = 1.2


def worker(config: dict[str, Any]) -> None:
    import gc
    import importlib
    import logging
    import tracemalloc

    h.ensure_importable()
    import structlog

    import versionload

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    sys.path.insert(0, config["path"])
    tracker = versionload.install()
    module = importlib.import_module(config["module"])
    versionload.reload(module)  # a history exists and the code is compiled
    if config["mode"] == "per_version":
        count = config["versions"]
        tracker.max_versions = count + 10
        registry = tracker._registry
        origin = module.__file__
        from versionload._snapshot import _SourceDigest

        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            registry.record(module.__name__, module, "reload", origin, _SourceDigest("0" * 64))
        gc.collect()
        versions_bytes = (tracemalloc.get_traced_memory()[0] - before) / count
        before = tracemalloc.get_traced_memory()[0]
        copies = [dict(module.__dict__) for _ in range(count)]
        gc.collect()
        copies_bytes = (tracemalloc.get_traced_memory()[0] - before) / count
        tracemalloc.stop()
        assert len(copies) == count
        assert len(versionload.history(module)) >= count
        h.worker_result({"version": versions_bytes, "copy": copies_bytes})
        return
    reloads = config["reloads"]
    checkpoint = max(reloads // 10, 500)  # the first few hundred reloads warm caches up
    gc.collect()
    tracemalloc.start()
    early = 0
    for index in range(1, reloads + 1):
        versionload.reload(module)
        if index == checkpoint:
            gc.collect()
            early = tracemalloc.get_traced_memory()[0]
    gc.collect()
    end, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(versionload.history(module)) == versionload.DEFAULT_MAX_VERSIONS
    h.worker_result({"early": early, "end": end, "peak": peak, "checkpoint": checkpoint, "reloads": reloads})


def run(quick: bool) -> list[dict[str, Any]]:
    sizes = (10, 1000) if quick else (10, 30, 100, 1000, 10000)
    rounds = 1 if quick else 3
    reloads = 1500 if quick else 10000
    rows: list[dict[str, Any]] = []
    h.header("memory: bytes kept per version vs a shallow dict copy; many reloads stay flat")
    with tempfile.TemporaryDirectory(prefix="vlbench-memory-") as tmp:
        for names in sizes:
            directory = Path(tmp, f"m{names}")
            directory.mkdir()
            module = f"vlbench_memory_{names}"
            (directory / f"{module}.py").write_text(module_with_names(names))
            config = {"path": str(directory), "module": module, "mode": "per_version", "versions": 50}
            results = [h.run_worker(SCRIPT, config) for _ in range(rounds)]
            comparison = h.Comparison(
                f"bytes per version, {names} names",
                "version",
                "dict copy",
                tuple(r["version"] for r in results),
                tuple(r["copy"] for r in results),
                unit="B",
            )
            print(h.format_comparison(comparison, VERSION_TARGET), flush=True)
            rows.append({**comparison.row(), "target": VERSION_TARGET})
        directory = Path(tmp, "flat")
        directory.mkdir()
        (directory / "vlbench_flat.py").write_text(module_with_names(10))
        config = {"path": str(directory), "module": "vlbench_flat", "mode": "flat", "reloads": reloads}
        result = h.run_worker(SCRIPT, config)
        growth = result["end"] - result["early"]
        per_reload = growth / (reloads - result["checkpoint"])
        print(
            f"  {reloads} reloads, max_versions=10: traced {result['early'] / 1024:.1f} KiB after "
            f"{result['checkpoint']}, {result['end'] / 1024:.1f} KiB at the end (growth {growth} B, "
            f"{per_reload:.2f} B per reload), peak {result['peak'] / 1024:.1f} KiB",
            flush=True,
        )
        rows.append({"label": "flat", **result, "growth": growth, "per_reload": per_reload})
    return rows


def main(argv: list[str]) -> int:
    return h.script_main(argv, __doc__, worker, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
