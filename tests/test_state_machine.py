"""
Hostile sequences of edits, reloads, rollbacks, deletions and re-imports, checked
against a model after every step (hypothesis ``RuleBasedStateMachine``).

The default run is short enough for every test run. The long mode runs far more
and longer sequences::

    VERSIONLOAD_HYPOTHESIS_PROFILE=long python3 dev.py test tests/test_state_machine.py

What the core promises, and what the model encodes:

* a history belongs to one module object; numbers only go up per name, also across
  a re-import after ``del sys.modules[name]`` (which starts a new history);
* the module's dict holds exactly the bindings of the current version (same keys,
  same objects);
* a reload runs the source on disk in the existing dict, so names the new source does
  not bind survive (``importlib.reload`` semantics);
* a step that fails changes nothing: the dict, the history and ``sys.modules`` stay;
* bad input raises the documented typed error;
* every change is one changeset, whose ids only go up; ``undo`` of one that is
  undoable restores exactly the namespace the module had before it, and one whose
  version before was pruned (or that was undone already) is refused, changing nothing.
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import versionload

from .helpers import ModuleTree

PROFILE_ENV = "VERSIONLOAD_HYPOTHESIS_PROFILE"

settings.register_profile(
    "versionload-default",
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "versionload-long",
    max_examples=3000,
    stateful_step_count=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NAMES = ("alpha", "beta", "gamma", "delta")
_counter = itertools.count()

# What is on disk: a module that binds these names, one that does not compile, one
# that binds some names and then raises, or no file at all.
Source = tuple[str, dict[str, int]]


def _render(kind: str, names: dict[str, int]) -> str:
    body = "".join(f"{name} = {value}\n" for name, value in names.items())
    # A fresh object on each execution, so identity checks can see every re-run.
    body += "marker = object()\n"
    if kind == "syntax":
        return body + "broken = (\n"
    if kind == "raises":
        return body + "raise RuntimeError('raised at import')\n"
    return body


def _user_names(namespace: object) -> dict[str, object]:
    assert hasattr(namespace, "items")
    return {k: v for k, v in namespace.items() if not k.startswith("__") and k != "marker"}  # type: ignore[attr-defined]


class ModuleMachine(RuleBasedStateMachine):
    """
    One module under one tracker, and the model of what the tracker must say about it.
    """

    root: Path

    def __init__(self) -> None:
        super().__init__()
        self.name = f"sm_mod_{next(_counter)}"
        self.path = self.root / f"{self.name}.py"
        self.tracker = versionload.Tracker(include="sm_mod_*", max_versions=4).install()
        self.mtime = 1_600_000_000
        # The model.
        self.source: Source = ("ok", {})
        self.module: ModuleType | None = None
        self.expected: dict[str, int] = {}  # user names of the current version
        self.versions: dict[int, dict[str, int]] = {}  # number -> user names, of this history
        self.current = 0
        self.last_number = 0
        self.max_versions = 4
        self.old_modules: list[ModuleType] = []
        self.tracked = True  # False after forget(), until something records a version again
        # Changesets: the namespace before each one, the ids undone, the highest id seen.
        self.before_changeset: dict[int, dict[str, object]] = {}
        self.undone: set[int] = set()
        self.last_id = 0
        self.last_namespace: dict[str, object] = {}

    # -- helpers --------------------------------------------------------------------------

    def _write(self, kind: str, names: dict[str, int]) -> None:
        self.path.write_text(_render(kind, names))
        # A new mtime second per write, so a bytecode cache is never mistaken for fresh
        # (the stdlib's own one-second blind spot is not what this machine tests).
        self.mtime += 2
        os.utime(self.path, (self.mtime, self.mtime))
        importlib.invalidate_caches()
        self.source = (kind, dict(names))

    def _record(self, expected: dict[str, int]) -> None:
        self.last_number += 1
        self.versions[self.last_number] = dict(expected)
        self.current = self.last_number
        self.expected = dict(expected)
        self._prune()

    def _prune(self) -> None:
        numbers = sorted(self.versions)
        while len(numbers) > self.max_versions:
            oldest = next(n for n in numbers if n != self.current)
            numbers.remove(oldest)
            del self.versions[oldest]

    def _state(self) -> tuple[dict[str, object], tuple[versionload.ModuleVersion, ...], int, object]:
        assert self.module is not None
        if not self.tracked:
            with pytest.raises(versionload.NotTrackedError):
                self.tracker.history(self.module)
            return dict(self.module.__dict__), (), 0, sys.modules.get(self.name)
        return (
            dict(self.module.__dict__),
            self.tracker.history(self.module),
            self.tracker.current(self.module).number,
            sys.modules.get(self.name),
        )

    def _assert_unchanged(self, before: tuple[dict[str, object], tuple[object, ...], int, object]) -> None:
        namespace, versions, current, entry = before
        after_namespace, after_versions, after_current, after_entry = self._state()
        assert namespace.keys() == after_namespace.keys()
        assert all(namespace[k] is after_namespace[k] for k in namespace)
        assert len(versions) == len(after_versions)
        assert all(a is b for a, b in zip(versions, after_versions, strict=True))
        assert current == after_current
        assert entry is after_entry

    # -- rules ----------------------------------------------------------------------------

    @initialize(names=st.dictionaries(st.sampled_from(NAMES), st.integers(0, 99), min_size=1))
    def first_import(self, names: dict[str, int]) -> None:
        self._write("ok", names)
        self.module = importlib.import_module(self.name)
        self._record(names)

    @rule(
        kind=st.sampled_from(["ok", "ok", "ok", "syntax", "raises"]),
        names=st.dictionaries(st.sampled_from(NAMES), st.integers(0, 99)),
    )
    def edit(self, kind: str, names: dict[str, int]) -> None:
        self._write(kind, names)

    @rule()
    def remove_file(self) -> None:
        if self.path.exists():
            self.path.unlink()
            importlib.invalidate_caches()
        self.source = ("missing", {})

    @rule(by_name=st.booleans())
    def reload(self, by_name: bool) -> None:
        assert self.module is not None
        target: ModuleType | str = self.name if by_name else self.module
        before = self._state()
        kind, names = self.source
        if sys.modules.get(self.name) is not self.module:
            with pytest.raises(versionload.ModuleNotLoadedError):
                self.tracker.reload(target)
            self._assert_unchanged(before)
            return
        # A reload of an untracked module adopts it first, whatever happens next.
        adopting = not self.tracked
        if kind == "missing":
            with pytest.raises(versionload.SpecNotFoundError):
                self.tracker.reload(target)
        elif kind == "syntax":
            with pytest.raises(versionload.ReloadError) as caught:
                self.tracker.reload(target)
            assert isinstance(caught.value.__cause__, SyntaxError)
        elif kind == "raises":
            with pytest.raises(versionload.ReloadError) as caught:
                self.tracker.reload(target)
            assert isinstance(caught.value.__cause__, RuntimeError)
        else:
            marker = self.module.__dict__.get("marker")
            assert self.module is self.tracker.reload(target)
            assert marker is not self.module.marker  # the code really ran again
            if adopting:
                self.tracked = True
                self._record(self.expected)
            # Names the new source does not bind survive a reload.
            self._record({**self.expected, **names})
            return
        if adopting:
            # The adoption stays (the invariants check it); the namespace is untouched.
            self.tracked = True
            self._record(self.expected)
            namespace = self.module.__dict__
            assert before[0].keys() == namespace.keys()
            assert all(before[0][k] is namespace[k] for k in namespace)
            return
        self._assert_unchanged(before)

    @precondition(lambda self: self.tracked)
    @rule(data=st.data(), by_name=st.booleans())
    def rollback_to_existing(self, data: st.DataObject, by_name: bool) -> None:
        assert self.module is not None
        number = data.draw(st.sampled_from(sorted(self.versions)))
        target: ModuleType | str = self.name if by_name else self.module
        assert self.module is self.tracker.rollback(target, to=number)
        self.current = number
        self.expected = dict(self.versions[number])

    @precondition(lambda self: self.tracked)
    @rule(by_name=st.booleans())
    def rollback_to_previous(self, by_name: bool) -> None:
        assert self.module is not None
        target: ModuleType | str = self.name if by_name else self.module
        below = [n for n in self.versions if n < self.current]
        if not below:
            before = self._state()
            with pytest.raises(versionload.VersionNotFoundError):
                self.tracker.rollback(target)
            self._assert_unchanged(before)
            return
        self.tracker.rollback(target)
        self.current = max(below)
        self.expected = dict(self.versions[self.current])

    @precondition(lambda self: self.tracked)
    @rule(number=st.integers(-3, 200))
    def rollback_to_missing(self, number: int) -> None:
        assert self.module is not None
        if number in self.versions:
            return
        before = self._state()
        with pytest.raises(versionload.VersionNotFoundError) as caught:
            self.tracker.rollback(self.module, to=number)
        assert number == caught.value.version
        assert tuple(sorted(self.versions)) == caught.value.available
        self._assert_unchanged(before)

    @precondition(lambda self: self.tracked)
    @rule(to=st.sampled_from(["1", 1.0, True, b"1", [1]]))
    def rollback_with_bad_number(self, to: object) -> None:
        assert self.module is not None
        before = self._state()
        with pytest.raises(versionload.InvalidArgumentError):
            self.tracker.rollback(self.module, to=to)  # type: ignore[arg-type]
        self._assert_unchanged(before)

    @rule()
    def rollback_replaced_module(self) -> None:
        if not self.old_modules:
            return
        with pytest.raises(versionload.NotTrackedError):
            self.tracker.rollback(self.old_modules[-1], to=self.current)

    @precondition(lambda self: not self.tracked)
    @rule(by_name=st.booleans())
    def rollback_untracked(self, by_name: bool) -> None:
        assert self.module is not None
        before = self._state()
        with pytest.raises(versionload.NotTrackedError):
            self.tracker.rollback(self.name if by_name else self.module)
        self._assert_unchanged(before)

    @rule()
    def forget(self) -> None:
        assert self.tracked == self.tracker.forget(self.name)
        self.tracked = False
        self.versions = {}
        self.current = 0

    @rule()
    def track(self) -> None:
        assert self.module is not None
        version = self.tracker.track(self.module)
        if not self.tracked:
            self.tracked = True
            self._record(self.expected)
            assert "adopted" == version.reason
        assert self.current == version.number

    @precondition(lambda self: self.source[0] == "ok")
    @rule()
    def external_reload(self) -> None:
        """
        ``importlib.reload`` by other code, with source that works (a failing one leaves
        a half-run module, as the stdlib does, which versionload does not repair).
        """
        assert self.module is not None
        if sys.modules.get(self.name) is not self.module:
            before = self._state()
            with pytest.raises(ImportError):
                importlib.reload(self.module)
            self._assert_unchanged(before)
            return
        if not self.tracked:
            self.tracked = True
            self._record(self.expected)
        assert self.module is importlib.reload(self.module)
        self._record({**self.expected, **self.source[1]})
        # The stand-in loader used to observe the reload is gone everywhere.
        spec = self.module.__spec__
        assert spec is not None
        assert "_LoaderStandIn" != type(spec.loader).__name__
        assert "_LoaderStandIn" != type(self.module.__loader__).__name__

    @rule()
    def delete_from_sys_modules(self) -> None:
        sys.modules.pop(self.name, None)

    @rule()
    def reimport(self) -> None:
        assert self.module is not None
        kind, names = self.source
        if self.name in sys.modules:
            assert self.module is importlib.import_module(self.name)
            return
        before = self._state()
        if kind == "ok":
            fresh = importlib.import_module(self.name)
            assert fresh is not self.module
            self.old_modules.append(self.module)
            self.module = fresh
            # A new history, with numbers continuing where the old one stopped.
            self.versions = {}
            self.tracked = True
            self._record(names)
            return
        expected_error = {"syntax": SyntaxError, "raises": RuntimeError, "missing": ModuleNotFoundError}[kind]
        with pytest.raises(expected_error):
            importlib.import_module(self.name)
        assert self.name not in sys.modules
        self._assert_unchanged(before)

    @rule(value=st.integers(1, 6))
    def set_max_versions(self, value: int) -> None:
        self.tracker.max_versions = value
        self.max_versions = value
        self._prune()

    @rule(value=st.sampled_from([0, -1, "3", 2.0, True]))
    def set_bad_max_versions(self, value: object) -> None:
        assert self.module is not None
        before = self._state()
        with pytest.raises(versionload.InvalidArgumentError):
            self.tracker.max_versions = value  # type: ignore[assignment]
        assert self.max_versions == self.tracker.max_versions
        self._assert_unchanged(before)

    def _undoable(self, changeset: versionload.Changeset) -> bool:
        (change,) = changeset.changes  # one module per machine: one change per changeset
        return changeset.id not in self.undone and self.tracked and change.before in self.versions

    @rule(data=st.data())
    def undo(self, data: st.DataObject) -> None:
        assert self.module is not None
        listed = self.tracker.changesets()
        wanted = data.draw(st.sampled_from([None, 10_000, *(c.id for c in listed)]))
        if wanted is None:
            found = next((c for c in reversed(listed) if c.id not in self.undone), None)
        else:
            found = next((c for c in listed if c.id == wanted), None)
        before = self._state()
        if found is None:
            with pytest.raises(versionload.ChangesetNotFoundError):
                self.tracker.undo(wanted)
            self._assert_unchanged(before)
            return
        if not self._undoable(found):
            with pytest.raises(versionload.ChangesetNotUndoableError):
                self.tracker.undo(wanted)
            self._assert_unchanged(before)
            return
        undo = self.tracker.undo(wanted)
        (change,) = found.changes
        assert (found.id, "undo", (versionload.Change(self.name, self.current, change.before),)) == (
            undo.undoes,
            undo.kind,
            undo.changes,
        )
        # Exactly the namespace the module had before the changeset: same names, same objects.
        expected = self.before_changeset[found.id]
        namespace = self.module.__dict__
        assert expected.keys() == namespace.keys()
        assert all(expected[k] is namespace[k] for k in namespace)
        self.undone.add(found.id)
        self.current = change.before
        self.expected = dict(self.versions[change.before])

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def changesets_match_the_model(self) -> None:
        if self.module is None:
            return
        listed = self.tracker.changesets()
        ids = [c.id for c in listed]
        assert all(a < b for a, b in itertools.pairwise(ids))
        # Each step makes at most one changeset, which remembers the namespace before the step.
        fresh = [c for c in listed if c.id > self.last_id]
        assert len(fresh) <= 1
        for changeset in fresh:
            self.before_changeset[changeset.id] = self.last_namespace
            self.last_id = changeset.id
        for changeset in listed:
            assert self._undoable(changeset) == changeset.undoable
        self.last_namespace = dict(self.module.__dict__)

    @invariant()
    def namespace_is_the_current_version(self) -> None:
        if self.module is None or not self.tracked:
            return
        current = self.tracker.current(self.module)
        assert self.current == current.number
        namespace = self.module.__dict__
        assert set(current.bindings) == set(namespace)
        assert all(current.bindings[k] is namespace[k] for k in namespace)
        assert self.expected == _user_names(namespace)

    @invariant()
    def history_matches_the_model(self) -> None:
        if self.module is None:
            return
        if not self.tracked:
            assert self.name not in self.tracker.tracked()
            return
        numbers = [v.number for v in self.tracker.history(self.module)]
        assert all(a < b for a, b in itertools.pairwise(numbers))
        assert sorted(self.versions) == numbers
        assert len(numbers) <= self.max_versions
        for version in self.tracker.history(self.module):
            assert self.versions[version.number] == _user_names(version.bindings)

    def teardown(self) -> None:
        self.tracker.uninstall()
        sys.modules.pop(self.name, None)


def _profile() -> settings:
    name = os.environ.get(PROFILE_ENV, "default")
    return settings.get_profile(f"versionload-{name}")


LONG = os.environ.get(PROFILE_ENV) == "long"


class TestStateMachine:
    @pytest.mark.timeout(3600 if LONG else 120)
    def test_random_sequences_keep_namespace_and_history_consistent(
        self, tree: ModuleTree, bytecode: bool
    ) -> None:
        """Every step of a random sequence leaves the module exactly as the model says."""
        ModuleMachine.root = tree.root
        run_state_machine_as_test(ModuleMachine, settings=_profile())
