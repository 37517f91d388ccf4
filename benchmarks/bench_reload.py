"""
Reload and rollback: ``versionload.reload`` against ``importlib.reload``, and the
time of ``versionload.rollback`` against the time of one reload.

Each sample is one fresh interpreter that imports a generated module with N
top-level names, reloads it a few times untimed, then times R reloads one by one
and reports their median. Bytecode writing is on, as users have it. Two scenarios:

- ``unchanged``: the source is not touched and its ``.pyc`` is valid, so
  ``importlib.reload`` unmarshals the cache while versionload, which never trusts
  the cache for a reload, reads the source (and, for a source it has not compiled
  before, compiles it).
- ``edited``: before each reload the source is rewritten with a different value
  (same size, a later mtime, untimed), so both sides must compile and write the cache.

The versionload workers then time rollbacks between the last two versions. Two more
variants call ``importlib.reload`` with the hook installed, as other tools do: on a
tracked module (``hooked``, the hook records the reload) and on a module the tracker's
``include`` leaves out (``untracked``). Logging is configured at CRITICAL, so no event
reaches anybody and none is built; ``bench_events.py`` measures rendering.

In full mode, when valgrind is installed, the edited-source rows are also taken as
instruction counts per reload (CPU-time ratios on a shared 2-core machine cannot
resolve less than ~5 %): the source texts are made before counting, automatic garbage
collection is off during the reloads and one collection runs after them, so every
variant pays for its garbage once, at the same point.
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
RELOAD_TARGET = 1.10  # unchanged source, at 1,000 names
EDITED_TARGET = 1.00  # versionload.reload / importlib.reload, edited source, 10 and 1,000 names
HOOKED_TARGET = 1.05  # importlib.reload with the hook / without, edited source, 1,000 names
ROLLBACK_TARGET = 0.05  # of one reload


def _median(values: list[float]) -> float:
    return h.Stats.of(values).median


def worker(config: dict[str, Any]) -> None:
    import importlib
    import logging

    h.ensure_importable()
    import structlog

    import versionload

    # Events are measured by bench_events.py; here nobody listens, so none is built.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    path = Path(config["path"])
    name = config["module"]
    source = path / f"{name}.py"
    sys.path.insert(0, str(path))
    use_versionload = config["variant"] == "versionload"
    if config["variant"] != "stdlib":
        versionload.install()
    if config["variant"] == "untracked":
        versionload.default_tracker().configure(include="vlbench_nothing_tracked")
    module = importlib.import_module(name)
    reload = versionload.reload if use_versionload else importlib.reload
    edited = config["scenario"] == "edited"
    stat = source.stat()
    size, base_mtime = stat.st_size, int(stat.st_mtime)

    def prepare(step: int) -> None:
        if edited:
            text = module_with_names(config["names"], edit=step)
            source.write_text(text)
            # A whole second later each time: the bytecode cache check sees every edit.
            os.utime(source, (base_mtime + step, base_mtime + step))
            assert source.stat().st_size == size

    if config.get("count") is not None:
        _count_reloads(config, module, reload, source, base_mtime)
    step = 1
    first = 0.0
    for index in range(config["warmup"]):
        prepare(step)
        step += 1
        started = h.now_ns()
        reload(module)
        if index == 0:
            first = (h.now_ns() - started) / 1e6
    times = []
    for _ in range(config["reloads"]):
        prepare(step)
        step += 1
        started = h.now_ns()
        reload(module)
        times.append((h.now_ns() - started) / 1e6)
    if edited:
        assert step - 1 == module.EDIT, "the reload did not run the edited source"
    result: dict[str, Any] = {"ms": _median(times), "first_ms": first}
    if use_versionload:
        numbers = [v.number for v in versionload.history(module)]
        a, b = numbers[-2], numbers[-1]
        rollbacks = []
        for index in range(config["reloads"]):
            started = h.now_ns()
            versionload.rollback(module, to=a if index % 2 == 0 else b)
            rollbacks.append((h.now_ns() - started) / 1e6)
        result["rollback_ms"] = _median(rollbacks)
    h.worker_result(result)


def _count_reloads(config: dict[str, Any], module: Any, reload: Any, source: Path, base_mtime: int) -> None:
    """
    Under valgrind: ``warmup`` then ``count`` edited reloads, then exit (see the docstring).
    """
    import gc

    total = config["warmup"] + config["count_max"]
    # Made before counting, and as many in every run: only the reloads differ.
    texts = [module_with_names(config["names"], edit=step) for step in range(1, total + 1)]
    gc.collect()
    gc.disable()
    for step in range(1, config["warmup"] + config["count"] + 1):
        source.write_text(texts[step - 1])
        os.utime(source, (base_mtime + step, base_mtime + step))
        reload(module)
    gc.collect()
    assert module.EDIT == config["warmup"] + config["count"], "the reload did not run the edited source"
    sys.stdout.flush()
    os._exit(0)


def _instruction_rows(directory: Path, module: str, names: int, env: dict[str, str]) -> list[dict[str, Any]]:
    """
    Instructions per edited reload of each variant, against importlib.reload without the hook.
    """
    low, high = 1, 6
    config = {"path": str(directory), "module": module, "names": names, "scenario": "edited", "warmup": 2}
    config["count_max"] = high

    def fresh() -> None:
        # Every counted run starts from the same files: the original source, no cache.
        (directory / f"{module}.py").write_text(module_with_names(names))
        shutil.rmtree(directory / "__pycache__", ignore_errors=True)

    per_reload = {
        variant: h.instructions_per_step(
            SCRIPT, {**config, "variant": variant}, "count", low, high, env, before=fresh
        )
        for variant in ("stdlib", "versionload", "hooked", "untracked")
    }
    rows = []
    for variant, label, target in (
        ("versionload", "versionload.reload", EDITED_TARGET),
        ("hooked", "importlib.reload + hook (tracked)", HOOKED_TARGET if names == 1000 else None),
        ("untracked", "importlib.reload + hook (untracked)", HOOKED_TARGET if names == 1000 else None),
    ):
        ratio = per_reload[variant] / per_reload["stdlib"]
        verdict = ""
        if target is not None:
            verdict = f"  target <= {target:.2f}: {'met' if ratio <= target else 'MISSED'}"
        print(
            f"  {label + f', edited, {names} names':<52} {per_reload[variant] / 1e6:9.3f} M instr"
            f" | importlib.reload {per_reload['stdlib'] / 1e6:9.3f} M instr"
            f" | ratio {ratio:.4f} (instructions){verdict}",
            flush=True,
        )
        rows.append(
            {
                "label": f"{label}, edited, {names} names",
                "unit": "instructions",
                "a": variant,
                "b": "stdlib",
                "a_value": per_reload[variant],
                "b_value": per_reload["stdlib"],
                "ratio": ratio,
                "target": target,
            }
        )
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    sizes = (10, 1000) if quick else (10, 1000, 10000)
    rounds = 2 if quick else 11
    reloads = 5 if quick else 25
    hooked_up_to = 10 if quick else 1000
    rows: list[dict[str, Any]] = []
    h.header("reload: versionload.reload vs importlib.reload; rollback vs one reload")
    env = {"PYTHONDONTWRITEBYTECODE": ""}  # bytecode writing on, as users have it
    with tempfile.TemporaryDirectory(prefix="vlbench-reload-") as tmp:
        for scenario in ("unchanged", "edited"):
            for names in sizes:
                directory = Path(tmp, f"{scenario}-{names}")
                directory.mkdir()
                module = f"vlbench_names_{names}"
                (directory / f"{module}.py").write_text(module_with_names(names))
                config = {
                    "path": str(directory),
                    "module": module,
                    "names": names,
                    "scenario": scenario,
                    "warmup": 2,
                    "reloads": reloads,
                }
                samples: dict[str, list[dict[str, Any]]] = {
                    "versionload": [],
                    "stdlib": [],
                    "hooked": [],
                    "untracked": [],
                }

                def sampler(
                    variant: str, key: str = "ms", config: dict[str, Any] = config, samples: Any = samples
                ) -> Any:
                    def sample() -> float:
                        result = h.run_worker(SCRIPT, {**config, "variant": variant}, env)
                        samples[variant].append(result)
                        return float(result[key])

                    return sample

                comparison = h.compare(
                    f"reload {scenario}, {names} names", rounds, sampler("versionload"), sampler("stdlib")
                )
                if scenario == "edited":
                    target = EDITED_TARGET if names in (10, 1000) else None
                else:
                    target = RELOAD_TARGET if names == 1000 else None
                print(h.format_comparison(comparison, target), flush=True)
                rows.append({**comparison.row(), "target": target})
                first = h.Comparison(
                    f"  first reload after import, {names} names",
                    "versionload",
                    "stdlib",
                    tuple(r["first_ms"] for r in samples["versionload"]),
                    tuple(r["first_ms"] for r in samples["stdlib"]),
                )
                print(h.format_comparison(first), flush=True)
                rows.append(first.row())
                rollback = h.Comparison(
                    f"rollback vs reload ({scenario}), {names} names",
                    "rollback",
                    "reload",
                    tuple(r["rollback_ms"] for r in samples["versionload"]),
                    tuple(r["ms"] for r in samples["versionload"]),
                )
                # The target is against a reload of edited source, the reason to reload at
                # all; against a reload of unchanged source the ratio is shown for information.
                rollback_target = ROLLBACK_TARGET if scenario == "edited" else None
                print(h.format_comparison(rollback, rollback_target), flush=True)
                rows.append({**rollback.row(), "target": rollback_target})
                if names > hooked_up_to:
                    continue
                # Other tools (IPython's autoreload, frameworks) call importlib.reload
                # while the hook is installed: the hook records those reloads too.
                hooked_target = HOOKED_TARGET if scenario == "edited" and names == 1000 else None
                for variant in ("hooked", "untracked"):
                    which = "tracked" if variant == "hooked" else variant
                    hooked = h.compare(
                        f"importlib.reload + hook ({scenario}, {which}), {names} names",
                        rounds,
                        sampler(variant),
                        sampler("stdlib"),
                        a_name=variant,
                        b_name="stdlib",
                    )
                    print(h.format_comparison(hooked, hooked_target), flush=True)
                    rows.append({**hooked.row(), "target": hooked_target})
                if not quick and scenario == "edited" and h.VALGRIND is not None:
                    rows.extend(_instruction_rows(directory, module, names, env))
    return rows


def main(argv: list[str]) -> int:
    return h.script_main(argv, __doc__, worker, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
