"""
Fault injection: every step of an import or a reload that can fail is made to fail,
through real finders, loaders, files and log processors, and the module and its
history must be exactly as they were (or, for a first import, not recorded at all).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import structlog

import versionload

from .helpers import ModuleTree

# -- helpers --------------------------------------------------------------------------------

State = tuple[dict[str, object], tuple[versionload.ModuleVersion, ...], int, object]


def _state(tracker: versionload.Tracker, module: ModuleType) -> State:
    name = module.__spec__.name if module.__spec__ is not None else module.__name__
    return (
        dict(module.__dict__),
        tracker.history(module),
        tracker.current(module).number,
        sys.modules.get(name),
    )


def _assert_unchanged(tracker: versionload.Tracker, module: ModuleType, before: State) -> None:
    namespace, versions, current, entry = before
    after_namespace, after_versions, after_current, after_entry = _state(tracker, module)
    assert namespace.keys() == after_namespace.keys()
    assert [k for k in namespace if namespace[k] is not after_namespace[k]] == []
    assert versions == after_versions
    assert current == after_current
    assert entry is after_entry
    # And the recorded version still describes the module exactly.
    assert dict(tracker.current(module).bindings) == module.__dict__


class Unraisable:
    """
    Collects what versionload reports through ``sys.unraisablehook``.
    """

    def __init__(self) -> None:
        self.reports: list[Any] = []

    def __call__(self, report: Any) -> None:
        self.reports.append(report)


@pytest.fixture(name="unraisable")
def _unraisable(monkeypatch: pytest.MonkeyPatch) -> Unraisable:
    """
    Replace pytest's unraisable hook for the test, so reported errors can be asserted
    on instead of being turned into warnings (and, with ``filterwarnings=error``, failures).
    """
    collector = Unraisable()
    monkeypatch.setattr(sys, "unraisablehook", collector)
    return collector


class HostileFinder:
    """
    A real meta-path finder that finds modules with the path finder, and then does
    something hostile (set per test) to the spec it found before handing it out.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.armed = False
        self.action: Any = None

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname != self.name or not self.armed:
            return None
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is not None and self.action is not None:
            spec = self.action(spec) or spec
        return spec


@pytest.fixture(name="hostile")
def _hostile() -> Iterator[HostileFinder]:
    finder = HostileFinder("flt_mod")
    # Behind the tracker's finder, which always goes first.
    sys.meta_path.insert(0, finder)
    yield finder
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)


@pytest.fixture(name="loaded")
def _loaded(tree: ModuleTree, tracker: versionload.Tracker) -> ModuleType:
    """
    ``flt_mod`` imported with a fresh tracker installed, and reloaded once.
    """
    tree.module("flt_mod", "VALUE = 1\nmarker = object()\n")
    module = importlib.import_module("flt_mod")
    tree.module("flt_mod", "VALUE = 2\nmarker = object()\n")
    tracker.reload(module)
    return module


# -- the source file -----------------------------------------------------------------------


class TestSourceVanishes:
    def test_between_find_and_exec_during_reload(
        self, tree: ModuleTree, tracker: versionload.Tracker, hostile: HostileFinder, loaded: ModuleType
    ) -> None:
        """A file deleted after the finder found it makes the reload fail and leaves everything as it was."""
        tree.module("flt_mod", "VALUE = 3\nmarker = object()\n")
        hostile.armed = True
        hostile.action = lambda spec: os.unlink(spec.origin)
        before = _state(tracker, loaded)
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(loaded)
        assert isinstance(caught.value.__cause__, FileNotFoundError)
        _assert_unchanged(tracker, loaded, before)
        assert loaded.VALUE == 2

    def test_between_find_and_exec_during_first_import(
        self, tree: ModuleTree, tracker: versionload.Tracker, hostile: HostileFinder
    ) -> None:
        """A first import whose file vanishes fails as it would without the hook, and records nothing."""
        tree.module("flt_mod", "VALUE = 1\n")
        hostile.armed = True
        hostile.action = lambda spec: os.unlink(spec.origin)
        with pytest.raises(FileNotFoundError):
            importlib.import_module("flt_mod")
        assert "flt_mod" not in sys.modules
        assert "flt_mod" not in tracker.tracked()

    def test_file_replaced_by_a_directory(
        self, tree: ModuleTree, tracker: versionload.Tracker, loaded: ModuleType
    ) -> None:
        """A source path that became a directory is no module any more: SpecNotFoundError, nothing changed."""
        path = tree.path("flt_mod.py")
        path.unlink()
        path.mkdir()
        importlib.invalidate_caches()
        before = _state(tracker, loaded)
        with pytest.raises(versionload.SpecNotFoundError):
            tracker.reload(loaded)
        _assert_unchanged(tracker, loaded, before)


class DeniedLoader(SourceFileLoader):
    """
    A source loader that cannot read the source, as on a file without read permission
    (tests run as root, where ``chmod 000`` does not stop reads).
    """

    def get_data(self, path: str) -> bytes:
        if path.endswith(".py"):
            raise PermissionError(13, "Permission denied", path)
        return super().get_data(path)


class TestUnreadableSource:
    def test_reload_of_an_unreadable_file(
        self, tree: ModuleTree, tracker: versionload.Tracker, hostile: HostileFinder, loaded: ModuleType
    ) -> None:
        """A permission error reading the source fails the reload and changes nothing."""

        def deny(spec: ModuleSpec) -> ModuleSpec | None:
            assert spec.origin is not None
            return importlib.util.spec_from_file_location(
                spec.name, spec.origin, loader=DeniedLoader(spec.name, spec.origin)
            )

        hostile.armed = True
        hostile.action = deny
        before = _state(tracker, loaded)
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(loaded)
        assert isinstance(caught.value.__cause__, PermissionError)
        _assert_unchanged(tracker, loaded, before)

    def test_undecodable_source(
        self, tree: ModuleTree, tracker: versionload.Tracker, loaded: ModuleType
    ) -> None:
        """Source bytes that are not valid in their declared encoding fail the reload and change nothing."""
        tree.path("flt_mod.py").write_bytes(b"# -*- coding: ascii -*-\nVALUE = '\xff\xfe'\n")
        importlib.invalidate_caches()
        before = _state(tracker, loaded)
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(loaded)
        assert isinstance(caught.value.__cause__, SyntaxError)
        _assert_unchanged(tracker, loaded, before)


# -- the loader ------------------------------------------------------------------------------


class HalfwayLoader(importlib.abc.Loader):
    """
    A loader that binds a name in the module, then fails: the worst case for a reload.
    """

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__["VALUE"] = "half-done"
        module.__dict__["extra"] = "half-done"
        raise self.error


class TestLoaderRaises:
    @pytest.mark.parametrize(
        "error", [OSError("disk gone"), ImportError("bad archive"), ValueError("corrupt")]
    )
    def test_exec_module_fails_after_binding_names(
        self,
        tracker: versionload.Tracker,
        hostile: HostileFinder,
        loaded: ModuleType,
        error: Exception,
    ) -> None:
        """Whatever a loader's exec_module raises halfway, the reload fails and the namespace is put back."""

        def swap_loader(spec: ModuleSpec) -> ModuleSpec:
            return ModuleSpec(spec.name, HalfwayLoader(error), origin=spec.origin)

        hostile.armed = True
        hostile.action = swap_loader
        before = _state(tracker, loaded)
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(loaded)
        assert error is caught.value.__cause__
        _assert_unchanged(tracker, loaded, before)
        assert loaded.VALUE == 2
        assert not hasattr(loaded, "extra")


# -- logging and subscribers ---------------------------------------------------------------


class ProcessorError(Exception):
    """
    What the broken log processor raises.
    """


def _broken_processor(logger: Any, method: str, event_dict: Any) -> Any:
    raise ProcessorError(f"processor broke on {event_dict.get('event')}")


class TestLoggingFails:
    def test_reload_succeeds_when_a_processor_raises(
        self, tree: ModuleTree, tracker: versionload.Tracker, loaded: ModuleType, unraisable: Unraisable
    ) -> None:
        """A log processor that raises does not fail the reload; its error is reported; the state is right."""
        structlog.configure(processors=[_broken_processor], logger_factory=structlog.ReturnLoggerFactory())
        tree.module("flt_mod", "VALUE = 3\nmarker = object()\n")
        assert loaded is tracker.reload(loaded)
        assert loaded.VALUE == 3
        assert [v.number for v in tracker.history(loaded)] == [1, 2, 3]
        assert dict(tracker.current(loaded).bindings) == loaded.__dict__
        reported = [r.exc_value for r in unraisable.reports]
        assert any(isinstance(e, ProcessorError) and "module.reloaded" in str(e) for e in reported)

    def test_failed_reload_still_raises_its_own_error(
        self, tree: ModuleTree, tracker: versionload.Tracker, loaded: ModuleType, unraisable: Unraisable
    ) -> None:
        """When module and logging both fail, the caller gets the module's error; the other is reported."""
        structlog.configure(processors=[_broken_processor], logger_factory=structlog.ReturnLoggerFactory())
        tree.module("flt_mod", "VALUE = 3\nraise LookupError('module broke')\n")
        before = _state(tracker, loaded)
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(loaded)
        assert isinstance(caught.value.__cause__, LookupError)
        _assert_unchanged(tracker, loaded, before)
        assert any(isinstance(r.exc_value, ProcessorError) for r in unraisable.reports)

    def test_import_succeeds_when_processor_and_subscriber_raise(
        self, tree: ModuleTree, tracker: versionload.Tracker, unraisable: Unraisable
    ) -> None:
        """A first import is recorded and succeeds even when every listener of its event raises."""

        def broken_subscriber(event: object) -> None:
            raise ProcessorError("subscriber broke")

        structlog.configure(processors=[_broken_processor], logger_factory=structlog.ReturnLoggerFactory())
        tracker.subscribe(broken_subscriber)
        tree.module("flt_mod", "VALUE = 1\n")
        module = importlib.import_module("flt_mod")
        assert module.VALUE == 1
        assert [v.number for v in tracker.history(module)] == [1]
        assert len([r for r in unraisable.reports if isinstance(r.exc_value, ProcessorError)]) == 2

    def test_rollback_succeeds_when_a_subscriber_raises(
        self, tracker: versionload.Tracker, loaded: ModuleType, unraisable: Unraisable
    ) -> None:
        """A subscriber that raises on the rollback event does not undo or fail the rollback."""

        def broken_subscriber(event: object) -> None:
            raise ProcessorError("subscriber broke")

        tracker.subscribe(broken_subscriber)
        assert loaded is tracker.rollback(loaded, to=1)
        assert loaded.VALUE == 1
        assert tracker.current(loaded).number == 1
        assert dict(tracker.current(loaded).bindings) == loaded.__dict__
        # One report each for module.rolled_back and changeset.applied.
        assert len(unraisable.reports) == 2


# -- exceptions from module code ----------------------------------------------------------


class TestModuleCodeRaises:
    def test_memory_error_during_reload(
        self, tree: ModuleTree, tracker: versionload.Tracker, loaded: ModuleType, bytecode: bool
    ) -> None:
        """A MemoryError in the new code becomes a ReloadError and leaves the module as it was."""
        tree.module("flt_mod", "VALUE = 3\nextra = 1\nraise MemoryError\n")
        before = _state(tracker, loaded)
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(loaded)
        assert isinstance(caught.value.__cause__, MemoryError)
        _assert_unchanged(tracker, loaded, before)

    def test_keyboard_interrupt_during_reload_propagates(
        self, tree: ModuleTree, tracker: versionload.Tracker, loaded: ModuleType, bytecode: bool
    ) -> None:
        """A KeyboardInterrupt in the new code propagates as itself, with the module fully put back."""
        tree.module("flt_mod", "VALUE = 3\nextra = 1\nraise KeyboardInterrupt\n")
        before = _state(tracker, loaded)
        with pytest.raises(KeyboardInterrupt):
            tracker.reload(loaded)
        _assert_unchanged(tracker, loaded, before)
        assert loaded.VALUE == 2

    def test_keyboard_interrupt_after_replacing_itself_in_sys_modules(
        self, tree: ModuleTree, tracker: versionload.Tracker, loaded: ModuleType
    ) -> None:
        """Code that swapped its sys.modules entry and then was interrupted leaves the original entry."""
        tree.module(
            "flt_mod",
            "import sys, types\n"
            "sys.modules[__name__] = types.ModuleType(__name__)\n"
            "raise KeyboardInterrupt\n",
        )
        before = _state(tracker, loaded)
        with pytest.raises(KeyboardInterrupt):
            tracker.reload(loaded)
        _assert_unchanged(tracker, loaded, before)

    def test_interrupted_reload_is_followed_by_a_clean_one(
        self, tree: ModuleTree, tracker: versionload.Tracker, loaded: ModuleType
    ) -> None:
        """After an interrupted reload, the next reload works and gets the next number."""
        tree.module("flt_mod", "VALUE = 3\nraise KeyboardInterrupt\n")
        with pytest.raises(KeyboardInterrupt):
            tracker.reload(loaded)
        tree.module("flt_mod", "VALUE = 4\nmarker = object()\n")
        tracker.reload(loaded)
        assert loaded.VALUE == 4
        assert [v.number for v in tracker.history(loaded)] == [1, 2, 3]
        # And the module can reload itself again (the in-progress mark was cleared).
        assert "flt_mod" in sys.modules

    @pytest.mark.parametrize("error", ["MemoryError", "KeyboardInterrupt"])
    def test_first_import_interrupted_is_not_recorded(
        self, tree: ModuleTree, tracker: versionload.Tracker, error: str
    ) -> None:
        """A first import that dies in module code records nothing, and a later import records version 1."""
        path = tree.module("flt_mod", f"VALUE = 1\nraise {error}\n")
        with pytest.raises(getattr(__import__("builtins"), error)):
            importlib.import_module("flt_mod")
        assert "flt_mod" not in sys.modules
        assert "flt_mod" not in tracker.tracked()
        tree.module("flt_mod", "VALUE = 2\n")
        _touch_later(path)
        module = importlib.import_module("flt_mod")
        assert [v.reason for v in tracker.history(module)] == ["import"]
        assert module.VALUE == 2


def _touch_later(path: Path) -> None:
    """
    Move the file's mtime forward so a bytecode cache from the failed import is not reused.
    """
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    importlib.invalidate_caches()
