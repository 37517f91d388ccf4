"""
Which modules a cascade reaches: edges from code that runs at import, the default reach
(the trigger's package and the application's own code), patterns, adoption of untracked
dependents, refusal of dependents that cannot be reloaded, and `plan`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

import pytest

import versionload

from .helpers import ModuleTree

JOURNAL = """
ran = []
"""


def _write_app(tree: ModuleTree, value: int = 1) -> None:
    """
    app.base <- app.left <- app.top (which binds nothing of app.base), and
    app.base <- script (top-level app code);
    each module notes when its code runs.
    """
    tree.write(
        {
            "journal.py": JOURNAL,
            "app/__init__.py": "",
            "app/base.py": f"""
                import journal
                journal.ran.append(__name__)

                def f():
                    return {value}
            """,
            "app/left.py": """
                import journal
                from app.base import f
                journal.ran.append(__name__)
            """,
            "app/top.py": """
                import journal
                from app import left
                journal.ran.append(__name__)
            """,
            "script.py": """
                import journal
                from app.base import f
                journal.ran.append(__name__)
            """,
        }
    )


def _load_app(tree: ModuleTree) -> ModuleType:
    _write_app(tree)
    for name in ("app.top", "script"):
        importlib.import_module(name)
    journal = sys.modules["journal"]
    journal.ran.clear()
    return journal


def _installed_dir(tmp_path: Path, tree: ModuleTree) -> Path:
    """
    A directory named like an installed distribution's home, on sys.path, holding
    ``vendored``, which imports app.base at module level.
    """
    site = tmp_path / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "vendored.py").write_text(
        "import journal\nfrom app.base import f\njournal.ran.append(__name__)\n", encoding="utf-8"
    )
    sys.path.append(str(site))  # the autouse fixture restores sys.path
    importlib.invalidate_caches()
    return site


class TestDefaultReach:
    def test_reaches_own_package_and_app_code(
        self, tracker: versionload.Tracker, tree: ModuleTree, bytecode: bool
    ) -> None:
        """cascade=True reloads dependents in the trigger's package and top-level app modules."""
        journal = _load_app(tree)
        _write_app(tree, value=2)

        tracker.reload("app.base", cascade=True)

        assert ["app.base", "app.left", "app.top", "script"] == journal.ran
        assert 2 == sys.modules["script"].f()

    def test_installed_code_is_not_reached(
        self, tracker: versionload.Tracker, tree: ModuleTree, tmp_path: Path, bytecode: bool
    ) -> None:
        """A dependent under a site-packages directory is left alone by the default reach."""
        journal = _load_app(tree)
        _installed_dir(tmp_path, tree)
        vendored = importlib.import_module("vendored")
        journal.ran.clear()
        _write_app(tree, value=2)

        tracker.reload("app.base", cascade=True)

        assert ["app.base", "app.left", "app.top", "script"] == journal.ran
        assert 1 == vendored.f()

    def test_standard_library_is_not_reached(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A stdlib module that binds a function of the trigger is not part of the cascade."""
        _load_app(tree)
        # A stdlib module holding one of the app's functions depends on it (a namespace edge).
        import json

        json.__dict__["_versionload_test_hook"] = sys.modules["app.base"].f
        try:
            planned = tracker.plan("app.base", cascade=True)
            explicit = tracker.plan("app.base", cascade=["app.*", "json"])
        finally:
            del json.__dict__["_versionload_test_hook"]

        assert ("app.base", "app.left", "app.top", "script") == planned.modules
        assert "json" in explicit.modules

    def test_trigger_package_is_reached_wherever_it_lives(
        self, tracker: versionload.Tracker, tree: ModuleTree, tmp_path: Path
    ) -> None:
        """Modules of the trigger's own top-level package are reached even when installed."""
        site = tmp_path / "site-packages"
        (site / "lib3p").mkdir(parents=True)
        (site / "lib3p" / "__init__.py").write_text("", encoding="utf-8")
        (site / "lib3p" / "core.py").write_text("X = 1\n", encoding="utf-8")
        (site / "lib3p" / "api.py").write_text("from lib3p.core import X\n", encoding="utf-8")
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()
        importlib.import_module("lib3p.api")

        assert ("lib3p.core", "lib3p.api") == tracker.plan("lib3p.core", cascade=True).modules

    def test_installed_package_imported_before_install(self) -> None:
        """A cascade from structlog (imported before any tracker) plans its own package and app code only."""

        planned = versionload.Tracker().plan("structlog._config", cascade=True)

        # The package re-exports _config's names; the test suite's modules (app code
        # here) that bind structlog are reached too; versionload's own modules never.
        assert {"structlog._config", "structlog"} <= set(planned.modules)
        assert [] == [n for n in planned.modules if n.partition(".")[0] not in ("structlog", "tests")]
        assert planned.modules == planned.adopted


class TestPatterns:
    def test_one_pattern_says_exactly_which_dependents(
        self, tracker: versionload.Tracker, tree: ModuleTree, bytecode: bool
    ) -> None:
        """cascade='app.*' reloads the package's dependents, not the app's other modules."""
        journal = _load_app(tree)
        _write_app(tree, value=2)

        tracker.reload("app.base", cascade="app.*")

        assert ["app.base", "app.left", "app.top"] == journal.ran
        assert 1 == sys.modules["script"].f()

    def test_a_list_of_patterns_reaches_through_named_modules_only(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A dependent reached only through a module outside the patterns is not reloaded."""
        journal = _load_app(tree)

        tracker.reload("app.base", cascade=["app.top", "script"])

        assert ["app.base", "script"] == journal.ran

    def test_patterns_may_reach_installed_code(
        self, tracker: versionload.Tracker, tree: ModuleTree, tmp_path: Path
    ) -> None:
        """A pattern names a dependent the default reach leaves out."""
        journal = _load_app(tree)
        _installed_dir(tmp_path, tree)
        importlib.import_module("vendored")
        journal.ran.clear()

        tracker.reload("app.base", cascade=["vendored"])

        assert ["app.base", "vendored"] == journal.ran

    def test_no_pattern_reaches_no_dependent(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """An empty list of patterns is a cascade of the trigger alone."""
        journal = _load_app(tree)

        tracker.reload("app.base", cascade=[])

        assert ["app.base"] == journal.ran

    @pytest.mark.parametrize("bad", [1, None, "", [""], ["app.*", 3], b"app", {"app": 1}])
    def test_bad_cascade_changes_nothing(
        self, tracker: versionload.Tracker, tree: ModuleTree, bad: object
    ) -> None:
        """A cascade that is neither a bool nor patterns raises InvalidArgumentError; nothing ran."""
        journal = _load_app(tree)
        before = tracker.history("app.base")

        with pytest.raises(versionload.InvalidArgumentError, match="cascade"):
            tracker.reload("app.base", cascade=bad)  # type: ignore[arg-type]
        with pytest.raises(versionload.InvalidArgumentError, match="cascade"):
            tracker.plan("app.base", cascade=bad)  # type: ignore[arg-type]

        assert ([], before) == (journal.ran, tracker.history("app.base"))


class TestAdoption:
    def test_dependents_imported_before_install_are_adopted(self, tree: ModuleTree, bytecode: bool) -> None:
        """Modules imported before install() are found as dependents, adopted and reloaded."""
        journal = _load_app(tree)  # no tracker installed yet
        tracker = versionload.Tracker().install()
        tree.write({"app/late.py": "import journal\nfrom app.left import f\njournal.ran.append(__name__)\n"})
        importlib.invalidate_caches()
        importlib.import_module("app.late")  # tracked: imported after install
        journal.ran.clear()
        _write_app(tree, value=2)
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)

        try:
            tracker.reload("app.base", cascade=True)
        finally:
            tracker.uninstall()

        cascade = events[-1]
        assert isinstance(cascade, versionload.CascadeReloaded)
        # Ties are broken by tracking order first, then by sys.modules order.
        assert ["app.base", "app.left", "app.late", "app.top", "script"] == journal.ran
        assert ("app.base", "app.left", "app.late", "app.top", "script") == cascade.modules
        assert ("app.base", "app.left", "app.top", "script") == cascade.adopted
        assert ["adopted", "reload"] == [v.reason for v in tracker.history("script")]
        assert 2 == sys.modules["script"].f()

    def test_plan_adopts_nothing(self, tree: ModuleTree) -> None:
        """plan lists the modules a reload would adopt and leaves them untracked."""
        _load_app(tree)
        tracker = versionload.Tracker()

        planned = tracker.plan("app.base", cascade=True)

        expected = ("app.base", "app.left", "app.top", "script")
        assert versionload.ReloadPlan("app.base", expected, expected) == planned
        assert () == tracker.tracked()


class TestRefusedDependents:
    def test_dependent_outside_allowed_roots_fails_before_anything_runs(
        self, tree: ModuleTree, tmp_path: Path, bytecode: bool
    ) -> None:
        """A dependent refused by allowed_roots fails the whole group, named, with nothing run."""
        _write_app(tree)
        tracker = versionload.Tracker(allowed_roots=[tree.root]).install()
        try:
            outside = tmp_path / "outside"
            outside.mkdir()
            (outside / "plugin.py").write_text("from app.base import f\n", encoding="utf-8")
            sys.path.append(str(outside))
            importlib.invalidate_caches()
            importlib.import_module("app.top")
            plugin = importlib.import_module("plugin")
            journal = sys.modules["journal"]
            journal.ran.clear()
            _write_app(tree, value=2)
            versions = {name: tracker.history(name) for name in ("app.base", "app.left", "app.top", "plugin")}
            namespace = dict(sys.modules["app.base"].__dict__)
            events: list[versionload.Event] = []
            tracker.subscribe(events.append)

            with pytest.raises(versionload.GroupReloadError, match="plugin") as caught:
                tracker.reload("app.base", cascade=True)
            with pytest.raises(versionload.GroupReloadError, match="plugin"):
                tracker.plan("app.base", cascade=True)
        finally:
            tracker.uninstall()

        assert "plugin" == caught.value.module
        assert isinstance(caught.value.__cause__, versionload.ReloadRefusedError)
        assert [] == journal.ran
        assert namespace == sys.modules["app.base"].__dict__
        assert 1 == plugin.f()
        assert versions == {name: tracker.history(name) for name in versions}
        assert [("cascade.failed", "plugin", ())] == [(e.event, e.failed, e.undone) for e in events]  # type: ignore[attr-defined]

    def test_extension_module_dependent_fails_the_group(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """An extension module that binds a function of the trigger, named by a pattern, fails the group."""
        extension = importlib.import_module("select")  # lib-dynload/select.*.so on CPython
        if not isinstance(extension.__spec__.loader, importlib.machinery.ExtensionFileLoader):
            pytest.skip("select is built into this interpreter")
        journal = _load_app(tree)
        extension.__dict__["_versionload_test_hook"] = sys.modules["app.base"].f
        try:
            with pytest.raises(versionload.GroupReloadError, match="extension module") as caught:
                tracker.reload("app.base", cascade=["app.*", "select"])
        finally:
            del extension.__dict__["_versionload_test_hook"]

        assert ("select", []) == (caught.value.module, journal.ran)
        assert ("app.base", "app.left", "app.top", "select") == caught.value.modules

    def test_dependent_without_code_fails_the_group(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A module made at run time (no file) that a pattern reaches cannot be reloaded: the group fails."""
        journal = _load_app(tree)
        made = ModuleType("made_at_runtime")
        made.__spec__ = ModuleSpec("made_at_runtime", None)
        made.f = sys.modules["app.base"].f  # type: ignore[attr-defined]
        sys.modules["made_at_runtime"] = made
        before = tracker.history("app.base")

        with pytest.raises(versionload.GroupReloadError, match="made_at_runtime") as caught:
            tracker.reload("app.base", cascade=["app.*", "made_at_runtime"])
        # The default reach leaves a module without a file alone.
        tracker.reload("app.base", cascade=True)

        assert "made_at_runtime" == caught.value.module
        assert ["app.base", "app.left", "app.top", "script"] == journal.ran
        assert len(before) + 1 == len(tracker.history("app.base"))


class TestPlan:
    def test_plan_is_what_reload_applies(
        self, tracker: versionload.Tracker, tree: ModuleTree, bytecode: bool
    ) -> None:
        """The modules of plan() are those the cascade then reloads, in the same order."""
        journal = _load_app(tree)
        _write_app(tree, value=2)
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)

        planned = tracker.plan("app.base", cascade=True)
        assert [] == journal.ran
        tracker.reload("app.base", cascade=True)

        cascade = events[-1]
        assert isinstance(cascade, versionload.CascadeReloaded)
        assert (planned.modules, ()) == (cascade.modules, planned.adopted)
        assert list(planned.modules) == journal.ran

    def test_plan_without_cascade_is_the_module_alone(
        self, hook: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """versionload.plan(m) is the module alone, with the facade's type."""
        _load_app(tree)

        planned = versionload.plan("app.base")

        assert versionload.ReloadPlan("app.base", ("app.base",), ()) == planned
        assert "versionload" == type(planned).__module__
