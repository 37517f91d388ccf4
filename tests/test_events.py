"""
Structured events: exact structlog dicts, subscribers, and what an unconfigured program prints.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import versionload

from .helpers import ModuleTree


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _without_duration(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    The captured dicts with ``duration_ms`` checked (a float, not negative) and taken out.
    """
    result = []
    for entry in entries:
        entry = dict(entry)
        if "duration_ms" in entry:
            duration = entry.pop("duration_ms")
            assert isinstance(duration, float)
            assert duration >= 0
        result.append(entry)
    return result


def _named(entries: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return _without_duration([entry for entry in entries if entry["event"] == event])


class TestStructlogEvents:
    """
    The dicts each operation logs to the ``versionload`` structlog logger.
    """

    def test_module_loaded(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A first import logs module.loaded at debug level, with the version and the source hash.
        """
        path = tree.module("ev_loaded", "X = 1\n")
        with capture_logs() as logs:
            import ev_loaded
        names = len(vars(ev_loaded))
        assert [
            {
                "event": "module.loaded",
                "log_level": "debug",
                "module": "ev_loaded",
                "version": 1,
                "reason": "import",
                "origin": str(path),
                "source_sha256": _sha("X = 1\n"),
                "names": names,
            }
        ] == _named(logs, "module.loaded")

    def test_module_adopted(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        track() logs module.loaded with reason "adopted" and no source hash.
        """
        tracker.uninstall()
        path = tree.module("ev_adopted", "X = 1\n")
        import ev_adopted

        with capture_logs() as logs:
            tracker.track(ev_adopted)
        assert [
            {
                "event": "module.loaded",
                "log_level": "debug",
                "module": "ev_adopted",
                "version": 1,
                "reason": "adopted",
                "origin": str(path),
                "source_sha256": None,
                "names": len(vars(ev_adopted)),
            }
        ] == logs

    def test_module_reloaded(self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool) -> None:
        """
        A reload logs module.reloaded with both versions, the hash and the added/removed/changed names.
        """
        path = tree.module("ev_reloaded", "KEEP = 1\nGONE = 2\nCHANGE = [1]\n")
        import ev_reloaded  # noqa: F401

        path.write_text("KEEP = 1\nCHANGE = [2]\nNEW = 3\ndel GONE\n")
        with capture_logs() as logs:
            tracker.reload("ev_reloaded")
        assert [
            {
                "event": "module.reloaded",
                "log_level": "info",
                "module": "ev_reloaded",
                "version": 2,
                "previous_version": 1,
                "reason": "requested",
                "origin": str(path),
                "source_sha256": _sha("KEEP = 1\nCHANGE = [2]\nNEW = 3\ndel GONE\n"),
                "added": ["NEW"],
                "removed": ["GONE"],
                "changed": ["CHANGE"],
                "added_count": 1,
                "removed_count": 1,
                "changed_count": 1,
                "changeset_id": 1,
            },
            {
                "event": "changeset.applied",
                "log_level": "info",
                "module": "ev_reloaded",
                "changeset_id": 1,
                "kind": "reload",
                "modules": ["ev_reloaded"],
                "reason": "requested",
                "trigger": "ev_reloaded",
            },
        ] == _without_duration(logs)

    def test_module_reload_failed(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A failed reload logs module.reload_failed at error level with the error and where it happened.
        """
        path = tree.module("ev_failed", "X = 1\n")
        import ev_failed  # noqa: F401

        path.write_text("X = 2\nraise ValueError('bad')\n")
        with capture_logs() as logs, pytest.raises(versionload.ReloadError):
            tracker.reload("ev_failed")
        error = logs[0].pop("exc_info")

        assert isinstance(error, ValueError)
        assert [
            {
                "event": "module.reload_failed",
                "log_level": "error",
                "module": "ev_failed",
                "reason": "requested",
                "previous_version": 1,
                "origin": str(path),
                "source_sha256": _sha("X = 2\nraise ValueError('bad')\n"),
                "error": "ValueError('bad')",
                "location": f"{path}:2",
            }
        ] == _without_duration(logs)

    def test_syntax_error_location(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        For a syntax error, the failure event's location is the file and line of the error.
        """
        path = tree.module("ev_syntax", "X = 1\n")
        import ev_syntax  # noqa: F401

        path.write_text("X = 1\nY = (\n")
        with capture_logs() as logs, pytest.raises(versionload.ReloadError):
            tracker.reload("ev_syntax")
        (entry,) = _named(logs, "module.reload_failed")
        assert f"{path}:2" == entry["location"]
        assert entry["error"].startswith("SyntaxError(")

    def test_syntax_error_names_the_bytes_that_failed(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A source that does not compile is still read first, so the failure event carries its hash.
        """
        path = tree.module("ev_syntax_hash", "X = 1\n")
        import ev_syntax_hash  # noqa: F401

        path.write_text("X = 1\nY = (\n")
        with capture_logs() as logs, pytest.raises(versionload.ReloadError):
            tracker.reload("ev_syntax_hash")

        (entry,) = _named(logs, "module.reload_failed")
        assert _sha("X = 1\nY = (\n") == entry["source_sha256"]

    def test_module_rolled_back(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A rollback logs module.rolled_back at warning level with the target version's details.
        """
        path = tree.module("ev_rollback", "A = 1\nB = [1]\n")
        import ev_rollback  # noqa: F401

        # A first import's hash is computed when first asked for, while the file is unchanged.
        assert _sha("A = 1\nB = [1]\n") == tracker.current("ev_rollback").source_sha256
        path.write_text("A = 1\nB = [2]\nC = 3\n")
        tracker.reload("ev_rollback")
        with capture_logs() as logs:
            tracker.rollback("ev_rollback")
        assert [
            {
                "event": "module.rolled_back",
                "log_level": "warning",
                "module": "ev_rollback",
                "version": 1,
                "previous_version": 2,
                "reason": "requested",
                "version_reason": "import",
                "origin": str(path),
                "source_sha256": _sha("A = 1\nB = [1]\n"),
                "added": [],
                "removed": ["C"],
                "changed": ["B"],
                "added_count": 0,
                "removed_count": 1,
                "changed_count": 1,
                "changeset_id": 2,
            },
            {
                "event": "changeset.applied",
                "log_level": "info",
                "module": "ev_rollback",
                "changeset_id": 2,
                "kind": "rollback",
                "modules": ["ev_rollback"],
                "reason": "requested",
                "trigger": "ev_rollback",
            },
        ] == _without_duration(logs)

    def test_version_pruned(self, tree: ModuleTree) -> None:
        """
        A prune logs version.pruned at debug level naming the pruned and the current version.
        """
        tracker = versionload.Tracker(max_versions=1).install()
        tree.module("ev_pruned", "X = 1\n")
        import ev_pruned  # noqa: F401

        with capture_logs() as logs:
            tracker.reload("ev_pruned")
        assert [
            {
                "event": "version.pruned",
                "log_level": "debug",
                "module": "ev_pruned",
                "reason": "requested",
                "version": 1,
                "current_version": 2,
            }
        ] == _named(logs, "version.pruned")
        assert ["version.pruned", "module.reloaded", "changeset.applied"] == [
            entry["event"] for entry in logs
        ]

    def test_external_reload_logged(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A plain importlib.reload by other code logs module.reloaded too.
        """
        import importlib

        path = tree.module("ev_external", "X = 1\n")
        import ev_external

        path.write_text("X = 22\nY = 1\n")
        with capture_logs() as logs:
            importlib.reload(ev_external)
        (entry,) = _named(logs, "module.reloaded")
        assert (2, 1, ["Y"], ["X"]) == (
            entry["version"],
            entry["previous_version"],
            entry["added"],
            entry["changed"],
        )


class TestSubscribers:
    """
    Tracker.subscribe / Tracker.unsubscribe.
    """

    def test_not_callable_is_refused(self, tracker: versionload.Tracker) -> None:
        """
        A subscriber that cannot be called raises InvalidArgumentError and is not added.
        """
        with pytest.raises(versionload.InvalidArgumentError, match="subscriber must be callable, got 5"):
            tracker.subscribe(5)  # type: ignore[arg-type]
        assert [] == tracker._registry.subscribers

    def test_receive_payload_objects(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Subscribers get the frozen payload objects, in order, for every event.
        """
        received: list[versionload.Event] = []
        tracker.subscribe(received.append)
        path = tree.module("ev_sub", "X = 1\n")
        import ev_sub  # noqa: F401

        path.write_text("X = 2\n")
        tracker.reload("ev_sub")
        tracker.rollback("ev_sub")
        kinds = [type(event) for event in received]
        assert [
            versionload.ModuleLoaded,
            versionload.ModuleReloaded,
            versionload.ChangesetApplied,
            versionload.ModuleRolledBack,
            versionload.ChangesetApplied,
        ] == kinds
        assert (
            versionload.ModuleLoaded(
                module="ev_sub",
                version=1,
                reason="import",
                origin=str(path),
                source_sha256=None,  # a first import's hash is not read from disk for subscribers
                names=len(tracker.history("ev_sub")[0].bindings),
            )
            == received[0]
        )
        assert (
            "module.loaded",
            "module.reloaded",
            "changeset.applied",
            "module.rolled_back",
            "changeset.applied",
        ) == tuple(e.event for e in received)
        assert ("X",) == received[1].changed
        assert _sha("X = 2\n") == received[1].source_sha256

    def test_raising_subscriber_does_not_break_reload(
        self, tree: ModuleTree, tracker: versionload.Tracker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A subscriber that raises is reported through sys.unraisablehook; the reload still succeeds.
        """
        reported: list[Any] = []
        monkeypatch.setattr(sys, "unraisablehook", reported.append)
        later: list[versionload.Event] = []

        def broken(event: versionload.Event) -> None:
            raise RuntimeError("subscriber bug")

        tracker.subscribe(broken)
        tracker.subscribe(later.append)
        path = tree.module("ev_broken", "X = 1\n")
        import ev_broken

        path.write_text("X = 2\n")
        assert ev_broken is tracker.reload(ev_broken)
        assert 2 == ev_broken.X
        assert 2 == tracker.current(ev_broken).number
        assert [versionload.ModuleLoaded, versionload.ModuleReloaded, versionload.ChangesetApplied] == [
            type(e) for e in later
        ]
        assert all(isinstance(r.exc_value, RuntimeError) for r in reported)
        assert 3 == len(reported)
        assert "subscriber" in reported[0].err_msg

    def test_raising_subscriber_does_not_break_import(
        self, tree: ModuleTree, tracker: versionload.Tracker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A subscriber that raises on module.loaded does not make the import fail.
        """
        reported: list[Any] = []
        monkeypatch.setattr(sys, "unraisablehook", reported.append)
        tracker.subscribe(lambda event: 1 / 0)
        tree.module("ev_broken_import", "X = 1\n")
        import ev_broken_import

        assert 1 == ev_broken_import.X
        assert [ZeroDivisionError] == [type(r.exc_value) for r in reported]

    def test_failing_log_processor_does_not_break_reload(
        self, tree: ModuleTree, tracker: versionload.Tracker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A structlog processor that raises is reported through sys.unraisablehook; the reload succeeds.
        """
        import structlog

        reported: list[Any] = []
        monkeypatch.setattr(sys, "unraisablehook", reported.append)

        def broken(logger: object, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("processor bug")

        structlog.configure(processors=[broken])
        path = tree.module("ev_processor", "X = 1\n")
        import ev_processor

        path.write_text("X = 2\n")
        assert ev_processor is tracker.reload(ev_processor)
        assert 2 == ev_processor.X
        assert {RuntimeError} == {type(r.exc_value) for r in reported}
        assert any("module.reloaded" in r.err_msg for r in reported)

    def test_unsubscribe(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        An unsubscribed callable gets nothing more; unsubscribing an unknown one is ignored.
        """
        received: list[versionload.Event] = []
        tracker.subscribe(received.append)
        tracker.unsubscribe(received.append)
        tracker.unsubscribe(print)
        tree.module("ev_unsub", "X = 1\n")
        import ev_unsub  # noqa: F401

        assert [] == received

    def test_fields_are_json_friendly(self) -> None:
        """
        Event.fields() turns tuples into lists and keeps the flat field names.
        """
        event = versionload.ModuleRolledBack(
            module="m",
            version=1,
            previous_version=2,
            reason="requested",
            version_reason="import",
            origin=None,
            source_sha256=None,
            duration_ms=0.5,
            added=("a",),
            removed=(),
            changed=("b", "c"),
            added_count=1,
            removed_count=0,
            changed_count=2,
        )
        assert {
            "module": "m",
            "version": 1,
            "previous_version": 2,
            "reason": "requested",
            "version_reason": "import",
            "origin": None,
            "source_sha256": None,
            "duration_ms": 0.5,
            "added": ["a"],
            "removed": [],
            "changed": ["b", "c"],
            "added_count": 1,
            "removed_count": 0,
            "changed_count": 2,
            "changeset_id": None,
        } == event.fields()


_PROGRAM = """
import pathlib, sys
import versionload

versionload.install()
import ev_program_mod
import json, decimal, email.message
path = pathlib.Path(ev_program_mod.__file__)
path.write_text("X = 2\\n")
versionload.reload(ev_program_mod)
path.write_text("X = 3\\nraise ValueError('nope')\\n")
try:
    versionload.reload(ev_program_mod)
except versionload.ReloadError:
    pass
versionload.rollback(ev_program_mod)
print("done", ev_program_mod.X)
"""


class TestSubscribeLoads:
    """
    Tracker.subscribe(..., loads=...): which module.loaded events a subscriber gets.
    """

    def test_only_loads_the_filter_accepts(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        The subscriber gets the loads its filter accepts, asked with name and origin.
        """
        wanted_path = tree.module("ev_loads_wanted", "X = 1\n")
        tree.module("ev_loads_other", "X = 1\n")
        asked: list[tuple[str, str | None]] = []

        def loads(name: str, origin: str | None) -> bool:
            if name.startswith("ev_loads_"):
                asked.append((name, origin))
            return name == "ev_loads_wanted"

        received: list[versionload.Event] = []
        tracker.subscribe(received.append, loads=loads)
        import ev_loads_other  # noqa: F401
        import ev_loads_wanted  # noqa: F401

        assert [("ev_loads_wanted", str(wanted_path))] == [
            (event.module, event.origin) for event in received if isinstance(event, versionload.ModuleLoaded)
        ]
        assert {"ev_loads_other", "ev_loads_wanted"} == {name for name, _ in asked}
        assert 1 == tracker.current("ev_loads_other").number

    def test_other_events_are_not_filtered(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A reload of a module whose load was declined still reaches the subscriber.
        """
        path = tree.module("ev_loads_reload", "X = 1\n")
        received: list[versionload.Event] = []
        tracker.subscribe(received.append, loads=lambda name, origin: False)
        import ev_loads_reload

        path.write_text("X = 2\n")
        tracker.reload(ev_loads_reload)

        assert ["module.reloaded", "changeset.applied"] == [
            event.event for event in received if getattr(event, "module", None) == "ev_loads_reload"
        ]

    def test_unfiltered_subscriber_still_gets_every_load(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Beside a filtered subscriber, one without a filter gets the declined load.
        """
        tree.module("ev_loads_both", "X = 1\n")
        filtered: list[versionload.Event] = []
        every: list[versionload.Event] = []
        tracker.subscribe(filtered.append, loads=lambda name, origin: False)
        tracker.subscribe(every.append)
        import ev_loads_both  # noqa: F401

        loaded = [e.module for e in every if isinstance(e, versionload.ModuleLoaded)]
        assert "ev_loads_both" in loaded
        assert [] == [e for e in filtered if isinstance(e, versionload.ModuleLoaded)]

    def test_failing_filter_counts_as_wanting_and_is_reported(
        self, tree: ModuleTree, tracker: versionload.Tracker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A filter that raises lets the load through, is reported, and the import succeeds.
        """
        tree.module("ev_loads_broken", "X = 1\n")
        reported: list[Any] = []
        monkeypatch.setattr(sys, "unraisablehook", reported.append)

        def loads(name: str, origin: str | None) -> bool:
            raise RuntimeError("filter bug")

        received: list[versionload.Event] = []
        tracker.subscribe(received.append, loads=loads)
        import ev_loads_broken

        assert 1 == ev_loads_broken.X
        assert "ev_loads_broken" in [e.module for e in received if isinstance(e, versionload.ModuleLoaded)]
        assert "filter bug" in [str(each.exc_value) for each in reported]

    def test_not_callable_is_refused(self, tracker: versionload.Tracker) -> None:
        """
        A filter that cannot be called raises InvalidArgumentError; nothing is subscribed.
        """
        received: list[versionload.Event] = []
        with pytest.raises(versionload.InvalidArgumentError, match="loads must be callable, got 3"):
            tracker.subscribe(received.append, loads=3)  # type: ignore[arg-type]
        assert [] == tracker._registry.subscribers

    def test_unsubscribe_drops_the_filter(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Subscribed again without a filter, the subscriber gets every load.
        """
        tree.module("ev_loads_again", "X = 1\n")
        received: list[versionload.Event] = []
        tracker.subscribe(received.append, loads=lambda name, origin: False)
        tracker.unsubscribe(received.append)
        tracker.subscribe(received.append)
        import ev_loads_again  # noqa: F401

        assert "ev_loads_again" in [e.module for e in received if isinstance(e, versionload.ModuleLoaded)]


class TestUnconfiguredProgram:
    """
    A real interpreter running a program that configures no logging at all.
    """

    def test_nothing_on_stdout_and_warnings_on_stderr(self, tmp_path: Path) -> None:
        """
        Nothing goes to stdout; Python's last-resort handler shows the failure and the rollback on stderr.
        """
        (tmp_path / "ev_program_mod.py").write_text("X = 1\n")
        (tmp_path / "program.py").write_text(textwrap.dedent(_PROGRAM))
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        result = subprocess.run(
            [sys.executable, "program.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert 0 == result.returncode, result.stderr
        output = (result.stdout + result.stderr).splitlines()
        assert ["done 1"] == result.stdout.splitlines()
        assert [] == [line for line in output if "module.loaded" in line or "version.pruned" in line]
        events = [line for line in output if line.startswith("module.")]
        assert 2 == len(events), output
        assert events[0].startswith("module.reload_failed ev_program_mod ")
        assert "ValueError: nope" in result.stderr
        assert events[1].startswith("module.rolled_back ev_program_mod ")


# Values whose comparison fails. They subclass plain value types because the diff
# compares only those by value (numpy's scalars subclass float the same way); any
# other object is compared by identity alone.
class _RaisingEq(int):
    def __eq__(self, other: object) -> bool:
        raise TypeError("refuses to be compared")

    __hash__ = int.__hash__


class _Ambiguous:
    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array is ambiguous")


class _ArrayLike(float):
    def __eq__(self, other: object) -> _Ambiguous:  # type: ignore[override]
        return _Ambiguous()

    __hash__ = float.__hash__


class _PlainRaisingEq:
    def __eq__(self, other: object) -> bool:
        raise TypeError("refuses to be compared")

    __hash__ = object.__hash__


_INCOMPARABLE = """
import ev_values

RAISING = ev_values.RaisingEq(1)
ARRAY = ev_values.ArrayLike(1.5)
PLAIN = ev_values.PlainRaisingEq()
IN_TUPLE = (ev_values.RaisingEq(2), 3)
IN_SET = frozenset({{ev_values.ArrayLike(2.5)}})
SAME = "kept"


def f():
    return {value}
"""

#: Every name bound to a new object that cannot be compared, plus the new function.
_INCOMPARABLE_CHANGED = ("ARRAY", "IN_SET", "IN_TUPLE", "PLAIN", "RAISING", "f")


@pytest.fixture(name="incomparable")
def _incomparable(tree: ModuleTree, tracker: versionload.Tracker) -> Path:
    """
    ``ev_incomparable``, binding values that cannot be compared: version 1 imported, version 2 on disk.
    """
    values = types.ModuleType("ev_values")
    values.RaisingEq = _RaisingEq  # type: ignore[attr-defined]
    values.ArrayLike = _ArrayLike  # type: ignore[attr-defined]
    values.PlainRaisingEq = _PlainRaisingEq  # type: ignore[attr-defined]
    sys.modules["ev_values"] = values  # the autouse fixture removes it again
    path = tree.module("ev_incomparable", _INCOMPARABLE.format(value=1))
    importlib.import_module("ev_incomparable")
    path.write_text(_INCOMPARABLE.format(value=2))
    return path


@pytest.mark.usefixtures("bytecode", "incomparable")
class TestIncomparableValues:
    """
    Event diffs of values whose __eq__ raises or answers something without a truth value.
    """

    def _subscribe(self, tracker: versionload.Tracker) -> list[versionload.Event]:
        received: list[versionload.Event] = []
        tracker.subscribe(received.append)
        return received

    def test_reload_succeeds_and_reports_them_changed(self, tracker: versionload.Tracker) -> None:
        """
        A reload succeeds and its event lists every value that cannot be compared as changed.
        """
        received = self._subscribe(tracker)
        module = tracker.reload("ev_incomparable")

        assert 2 == module.f()
        assert 2 == tracker.current(module).number
        assert [("module.reloaded", _INCOMPARABLE_CHANGED)] == [
            (e.event, e.changed)  # type: ignore[attr-defined]
            for e in received
            if e.event != "changeset.applied"
        ]

    def test_rollback_succeeds_and_reports_them_changed(self, tracker: versionload.Tracker) -> None:
        """
        A rollback restores the old objects and its event lists the values as changed.
        """
        module = sys.modules["ev_incomparable"]
        first = tracker.current(module).bindings
        tracker.reload(module)
        received = self._subscribe(tracker)
        tracker.rollback(module, to=1)

        assert module.RAISING is first["RAISING"]
        assert 1 == module.f()
        assert [("module.rolled_back", _INCOMPARABLE_CHANGED)] == [
            (e.event, e.changed)  # type: ignore[attr-defined]
            for e in received
            if e.event != "changeset.applied"
        ]

    def test_diff_counts_them_changed(self, tracker: versionload.Tracker) -> None:
        """
        diff() between the versions lists the values that cannot be compared as changed, not as an error.
        """
        tracker.reload("ev_incomparable")

        assert _INCOMPARABLE_CHANGED == tracker.diff("ev_incomparable", 1, 2).changed
        assert _INCOMPARABLE_CHANGED == tracker.diff("ev_incomparable", 2, 1).changed

    def test_in_place_update_succeeds(self, tracker: versionload.Tracker) -> None:
        """
        An in-place update keeps the function, and its reload event lists the values as changed.
        """
        module = sys.modules["ev_incomparable"]
        f = module.f
        received = self._subscribe(tracker)
        tracker.reload(module, update="in-place")

        assert module.f is f
        assert 2 == f()
        reloaded = [e for e in received if e.event == "module.reloaded"]
        assert [_INCOMPARABLE_CHANGED[:-1]] == [e.changed for e in reloaded]  # type: ignore[attr-defined]
