"""
``allowed_roots``: a reload runs code only from files under the roots a tracker allows,
judged on where the finders find the module *now*, with symlinks resolved.
"""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import versionload

from .helpers import ModuleTree

State = tuple[dict[str, object], tuple[versionload.ModuleVersion, ...], int]


def _state(tracker: versionload.Tracker, module: ModuleType) -> State:
    return dict(module.__dict__), tracker.history(module), tracker.current(module).number


def _assert_unchanged(tracker: versionload.Tracker, module: ModuleType, before: State) -> None:
    namespace, versions, current = before
    assert namespace.keys() == module.__dict__.keys()
    assert [] == [k for k in namespace if namespace[k] is not module.__dict__[k]]
    assert versions == tracker.history(module)
    assert current == tracker.current(module).number


# The module records each execution in a list that survives reloads, so a test can
# tell whether a refused reload ran any code at all.
RUNS = "import builtins\nbuiltins.__dict__.setdefault('_sec_runs', []).append(__name__)\nVALUE = {}\n"


@pytest.fixture(name="runs")
def _runs() -> list[str]:
    import builtins

    runs: list[str] = []
    builtins._sec_runs = runs  # type: ignore[attr-defined]
    yield runs  # type: ignore[misc]
    del builtins._sec_runs  # type: ignore[attr-defined]


class TestReloadWithinRoots:
    def test_module_under_an_allowed_root_reloads(self, tree: ModuleTree, runs: list[str]) -> None:
        """A module whose file lies under an allowed root reloads as usual."""
        tracker = versionload.Tracker(allowed_roots=[tree.root]).install()
        tree.module("sec_inside", RUNS.format(1))
        module = importlib.import_module("sec_inside")
        tree.module("sec_inside", RUNS.format(2))
        tracker.reload(module)
        assert module.VALUE == 2
        assert ["sec_inside", "sec_inside"] == runs

    def test_single_path_is_one_root(self, tree: ModuleTree, runs: list[str]) -> None:
        """A single str or path is taken as one root, not as an iterable of characters."""
        tracker = versionload.Tracker(allowed_roots=str(tree.root)).install()
        tree.module("sec_single", RUNS.format(1))
        module = importlib.import_module("sec_single")
        tracker.reload(module)
        assert ["sec_single", "sec_single"] == runs

    def test_module_inside_a_zip_under_a_root(self, tmp_path: Path, runs: list[str]) -> None:
        """A module inside a zip that lies under an allowed root reloads."""
        archive = tmp_path / "allowed" / "plugins.zip"
        archive.parent.mkdir()
        with zipfile.ZipFile(archive, "w") as handle:
            handle.writestr("sec_zipped.py", RUNS.format(1))
        sys.path.insert(0, str(archive))
        importlib.invalidate_caches()
        tracker = versionload.Tracker(allowed_roots=[tmp_path / "allowed"]).install()
        module = importlib.import_module("sec_zipped")
        tracker.reload(module)
        assert ["sec_zipped", "sec_zipped"] == runs


class TestReloadRefused:
    def test_module_outside_the_roots(self, tree: ModuleTree, tmp_path: Path, runs: list[str]) -> None:
        """A module outside every allowed root is refused before its code runs; nothing changes."""
        allowed = tmp_path / "allowed"
        allowed.mkdir()
        tracker = versionload.Tracker(allowed_roots=[allowed]).install()
        path = tree.module("sec_outside", RUNS.format(1))
        module = importlib.import_module("sec_outside")
        before = _state(tracker, module)
        with pytest.raises(versionload.ReloadRefusedError) as caught:
            tracker.reload(module)
        assert isinstance(caught.value, versionload.ReloadError)
        assert isinstance(caught.value, ImportError)
        assert str(path) == caught.value.path
        assert ["sec_outside"] == runs
        _assert_unchanged(tracker, module, before)

    def test_refusal_is_reported_as_a_failed_reload(self, tree: ModuleTree, tmp_path: Path) -> None:
        """A refused reload emits module.reload_failed naming the refused origin."""
        tracker = versionload.Tracker(allowed_roots=[tmp_path / "elsewhere"]).install()
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        path = tree.module("sec_event", "VALUE = 1\n")
        module = importlib.import_module("sec_event")
        with pytest.raises(versionload.ReloadRefusedError):
            tracker.reload(module)
        failed = [e for e in events if isinstance(e, versionload.ModuleReloadFailed)]
        assert [str(path)] == [e.origin for e in failed]
        assert "ReloadRefusedError" in failed[0].error

    def test_sibling_directory_with_the_root_as_prefix(self, tmp_path: Path, runs: list[str]) -> None:
        """A directory whose name merely starts with the root's name is not under the root."""
        (tmp_path / "plugins").mkdir()
        evil = tmp_path / "plugins_evil"
        evil.mkdir()
        (evil / "sec_prefix.py").write_text(RUNS.format(1))
        sys.path.insert(0, str(evil))
        importlib.invalidate_caches()
        tracker = versionload.Tracker(allowed_roots=[tmp_path / "plugins"]).install()
        module = importlib.import_module("sec_prefix")
        with pytest.raises(versionload.ReloadRefusedError):
            tracker.reload(module)
        assert ["sec_prefix"] == runs

    def test_symlink_inside_a_root_pointing_outside(self, tmp_path: Path, runs: list[str]) -> None:
        """A file reached through a symlink under the root, but stored outside it, is refused."""
        root = tmp_path / "root"
        root.mkdir()
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "sec_link.py").write_text(RUNS.format(1))
        (root / "sec_link.py").symlink_to(outside / "sec_link.py")
        sys.path.insert(0, str(root))
        importlib.invalidate_caches()
        tracker = versionload.Tracker(allowed_roots=[root]).install()
        module = importlib.import_module("sec_link")
        assert str(root / "sec_link.py") == module.__file__
        with pytest.raises(versionload.ReloadRefusedError):
            tracker.reload(module)
        assert ["sec_link"] == runs

    def test_judged_on_where_the_module_is_found_now(self, tmp_path: Path, runs: list[str]) -> None:
        """A module first loaded from an allowed root is refused once the finders find it elsewhere."""
        allowed, shadow = tmp_path / "allowed", tmp_path / "shadow"
        for directory in (allowed, shadow):
            directory.mkdir()
            (directory / "sec_moved.py").write_text(RUNS.format(1))
        sys.path.insert(0, str(allowed))
        importlib.invalidate_caches()
        tracker = versionload.Tracker(allowed_roots=[allowed]).install()
        module = importlib.import_module("sec_moved")
        sys.path.insert(0, str(shadow))  # a directory earlier on sys.path now wins
        importlib.invalidate_caches()
        before = _state(tracker, module)
        with pytest.raises(versionload.ReloadRefusedError) as caught:
            tracker.reload(module)
        assert str(shadow / "sec_moved.py") == caught.value.path
        assert ["sec_moved"] == runs
        _assert_unchanged(tracker, module, before)

    def test_module_without_a_file(self, tree: ModuleTree) -> None:
        """A module with no file (here a frozen one) cannot be shown to lie under a root, so it is refused."""
        tracker = versionload.Tracker(allowed_roots=[tree.root]).install()
        sys.modules.pop("__hello__", None)
        module = importlib.import_module("__hello__")
        with pytest.raises(versionload.ReloadRefusedError):
            tracker.reload(module)


class TestConfiguringRoots:
    def test_install_and_configure_set_and_lift_the_restriction(
        self, tree: ModuleTree, tmp_path: Path
    ) -> None:
        """install(allowed_roots=...) restricts the tracker; configure(allowed_roots=None) lifts that."""
        tracker = versionload.install(allowed_roots=[tmp_path / "nowhere"])
        tree.module("sec_default", "VALUE = 1\n")
        module = importlib.import_module("sec_default")
        with pytest.raises(versionload.ReloadRefusedError):
            versionload.reload(module)
        tracker.configure(allowed_roots=None)
        versionload.reload(module)
        assert [1, 2] == [v.number for v in versionload.history(module)]

    def test_settings_left_out_are_kept(self, tree: ModuleTree, tmp_path: Path) -> None:
        """A second install() or a configure() of one setting keeps the others in force."""
        allowed = tmp_path / "allowed"
        tracker = versionload.install(allowed_roots=[allowed], max_versions=20, include="sec_*")
        expected = (str(allowed.resolve()),)
        versionload.install()
        tracker.configure(max_versions=15)
        tree.module("sec_kept", "VALUE = 1\n")
        module = importlib.import_module("sec_kept")

        assert (expected, 15, True) == (tracker.allowed_roots, tracker.max_versions, tracker.installed)
        with pytest.raises(versionload.ReloadRefusedError):
            versionload.reload(module)
        assert ["sec_kept"] == [n for n in tracker.tracked() if n.startswith("sec_")]

    @pytest.mark.parametrize("value", [5, [5], [""], [b"/tmp"], object()])
    def test_bad_roots_are_rejected(self, value: object) -> None:
        """Roots that are not paths raise InvalidArgumentError, and leave the tracker's settings alone."""
        tracker = versionload.Tracker(allowed_roots=["/srv/plugins"])
        with pytest.raises(versionload.InvalidArgumentError):
            versionload.Tracker(allowed_roots=value)  # type: ignore[arg-type]
        with pytest.raises(versionload.InvalidArgumentError):
            tracker.configure(allowed_roots=value)  # type: ignore[arg-type]
        with pytest.raises(versionload.InvalidArgumentError):
            versionload.install(allowed_roots=value)  # type: ignore[arg-type]
        assert not versionload.default_tracker().installed
        assert (str(Path("/srv/plugins").resolve()),) == tracker.allowed_roots

    def test_error_is_exported_and_in_the_tree(self) -> None:
        """ReloadRefusedError is public and documented in the error tree."""
        import versionload._errors as errors

        assert "ReloadRefusedError" in versionload.__all__
        assert "ReloadRefusedError" in (errors.__doc__ or "")
        assert issubclass(versionload.ReloadRefusedError, versionload.ReloadError)


class TestEmptyRoots:
    def test_no_roots_refuses_every_reload(self, tree: ModuleTree) -> None:
        """An empty allowed_roots refuses every reload, unlike None which allows any."""
        tracker = versionload.Tracker(allowed_roots=[]).install()
        assert () == tracker.allowed_roots
        tree.module("sec_none", "VALUE = 1\n")
        module = importlib.import_module("sec_none")
        with pytest.raises(versionload.ReloadRefusedError):
            tracker.reload(module)
        tracker.configure(allowed_roots=None)
        assert tracker.allowed_roots is None
        tracker.reload(module)


class TestGroupsAreChecked:
    def test_a_refused_module_fails_its_whole_group(self, tree: ModuleTree, tmp_path: Path) -> None:
        """In reload_many, a module outside the roots fails the group and no module changes."""
        allowed = tmp_path / "allowed"
        allowed.mkdir()
        (allowed / "sec_group_in.py").write_text("VALUE = 1\n")
        sys.path.insert(0, str(allowed))
        tree.module("sec_group_out", "VALUE = 1\n")
        tracker = versionload.Tracker(allowed_roots=[allowed]).install()
        inside = importlib.import_module("sec_group_in")
        outside = importlib.import_module("sec_group_out")
        before = (_state(tracker, inside), _state(tracker, outside))
        with pytest.raises(versionload.GroupReloadError) as caught:
            tracker.reload_many([inside, outside])
        assert isinstance(caught.value.__cause__, versionload.ReloadRefusedError)
        _assert_unchanged(tracker, inside, before[0])
        _assert_unchanged(tracker, outside, before[1])
