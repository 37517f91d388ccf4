"""
Property test: any sequence of in-place reloads, plain reloads, failed reloads and
rollbacks leaves every function and class of the current version running that
version's code.
"""

from __future__ import annotations

import importlib
import itertools
import sys
import tempfile
import textwrap
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import versionload

_names = itertools.count()

SOURCE = """
LABEL = {label!r}

def f():
    return LABEL + "-f"

def deco(fn):
    def wrapper():
        return fn()
    return wrapper

@deco
def g():
    return {label!r} + "-g"

class C:
    KIND = {label!r}

    def m(self):
        return {label!r} + "-m"

    @property
    def p(self):
        return {label!r} + "-p"
"""

Operation = tuple[str, int]
operations = st.lists(
    st.tuples(st.sampled_from(["in-place", "rebind", "broken", "rollback"]), st.integers(0, 50)),
    max_size=10,
)


def _observed(module: object, bindings: dict[str, object], instance: object) -> tuple[str, ...]:
    c = bindings["C"]
    result = [bindings["f"](), bindings["g"](), c.KIND, c().m(), c().p]  # type: ignore[operator, attr-defined]
    if type(instance) is c:
        result += [instance.m(), instance.p]  # type: ignore[attr-defined]
    return tuple(result)


def _expected(label: str, instance_matches: bool) -> tuple[str, ...]:
    result = [f"{label}-f", f"{label}-g", label, f"{label}-m", f"{label}-p"]
    if instance_matches:
        result += [f"{label}-m", f"{label}-p"]
    return tuple(result)


class TestInPlaceSequences:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(operations)
    def test_current_version_runs_its_own_code(self, steps: list[Operation]) -> None:
        """After every step, the current version's functions, classes and matching instances run its code."""
        name = f"prop_inplace_{next(_names)}"
        with tempfile.TemporaryDirectory() as directory:
            root = Path(directory)
            path = root / f"{name}.py"
            sys.path.insert(0, directory)
            tracker = versionload.Tracker().install()
            try:
                path.write_text(textwrap.dedent(SOURCE.format(label="L0")))
                importlib.invalidate_caches()
                module = importlib.import_module(name)
                instance = module.C()
                labels = {1: "L0"}
                for index, (kind, pick) in enumerate(steps, start=1):
                    if kind == "rollback":
                        numbers = [v.number for v in tracker.history(module)]
                        tracker.rollback(module, to=numbers[pick % len(numbers)])
                    elif kind == "broken":
                        path.write_text(SOURCE.format(label=f"L{index}") + "\nraise RuntimeError('broken')\n")
                        before = dict(module.__dict__)
                        try:
                            tracker.reload(module, update="in-place")
                        except versionload.ReloadError:
                            pass
                        else:
                            raise AssertionError("the broken version reloaded")
                        assert before == module.__dict__
                    else:
                        path.write_text(SOURCE.format(label=f"L{index}"))
                        tracker.reload(module, update=kind)
                        labels[tracker.current(module).number] = f"L{index}"
                    current = tracker.current(module)
                    bindings = dict(current.bindings)
                    assert bindings == {k: v for k, v in module.__dict__.items() if k in bindings}
                    matches = type(instance) is bindings["C"]
                    assert _expected(labels[current.number], matches) == _observed(module, bindings, instance)
            finally:
                tracker.uninstall()
                sys.path.remove(directory)
                sys.modules.pop(name, None)
