"""
The hook alongside everything else that imports: pytest's assertion rewriter,
editable-install finders, zipimport, namespace packages, frozen and builtin modules,
sourceless ``.pyc`` modules, module ``__getattr__``, modules that replace themselves,
and ``__main__``. Each is imported, tracked, reloaded and rolled back for real, and
``uninstall()`` leaves the import system's hooks and caches as they were.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import py_compile
import runpy
import subprocess
import sys
import textwrap
import types
import zipfile
from collections.abc import Iterator
from importlib.machinery import ModuleSpec, SourcelessFileLoader
from pathlib import Path
from typing import Any

import pytest

import versionload

from .helpers import ModuleTree


def _assert_consistent(tracker: versionload.Tracker, module: types.ModuleType) -> None:
    """
    The module holds exactly its current version, and its spec is back to its own class.
    """
    current = tracker.current(module)
    # The one documented exception: a package keeps the attributes the import system
    # bound for submodules that are still imported (docs/semantics.md, rollback).
    kept_submodules = {
        key
        for key, value in module.__dict__.items()
        if key not in current.bindings and sys.modules.get(f"{module.__name__}.{key}") is value
    }
    assert set(current.bindings) == set(module.__dict__) - kept_submodules
    assert [k for k in current.bindings if current.bindings[k] is not module.__dict__[k]] == []
    spec = module.__dict__.get("__spec__")
    if spec is not None:
        assert "_versionload_observers" not in vars(spec)
        assert not type(spec).__name__.startswith("_Observing")
        assert type(spec).__module__ != "versionload._finder"


# -- pytest's assertion rewriter -----------------------------------------------------------


class TestAssertionRewriter:
    def test_this_test_module_is_rewritten(self) -> None:
        """The test modules themselves were rewritten by pytest, with the hook code importable beside it."""
        value = [1, 2]
        with pytest.raises(AssertionError) as caught:
            assert value == [1, 3]
        # Only a rewritten assert explains its operands.
        assert "[1, 2] == [1, 3]" in str(caught.value)

    def test_module_imported_through_pytests_hook(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """A module pytest rewrites is tracked, reloads with its asserts still rewritten, and rolls back."""
        rewriters = [f for f in sys.meta_path if type(f).__name__ == "AssertionRewritingHook"]
        if not rewriters:
            pytest.skip("pytest's assertion rewriting is off (--assert=plain)")
        source = "VALUE = {}\ndef check(x):\n    assert x == VALUE\n"
        tree.module("cx_rewritten", source.format(1))
        pytest.register_assert_rewrite("cx_rewritten")
        module = importlib.import_module("cx_rewritten")
        assert module.__loader__ is rewriters[0]
        tree.module("cx_rewritten", source.format(2))
        tracker.reload(module)
        with pytest.raises(AssertionError) as caught:
            module.check(3)
        assert "3 == 2" in str(caught.value)
        assert module.__loader__ is rewriters[0]
        tracker.rollback(module, to=1)
        assert module.VALUE == 1
        assert [v.reason for v in tracker.history(module)] == ["import", "reload"]
        _assert_consistent(tracker, module)


# -- setuptools-style editable installs ---------------------------------------------------


class EditableFinder:
    """
    A meta-path finder as setuptools writes for an editable install: it maps top-level
    names to directories outside ``sys.path``; submodules are then found through the
    package's ``__path__``.
    """

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if "." in fullname or fullname not in self.mapping:
            return None
        package = Path(self.mapping[fullname])
        return importlib.util.spec_from_file_location(
            fullname, package / "__init__.py", submodule_search_locations=[str(package)]
        )


@pytest.fixture(name="editable")
def _editable(tmp_path: Path) -> Iterator[Path]:
    project = tmp_path / "project" / "src" / "cx_editable"
    project.mkdir(parents=True)
    (project / "__init__.py").write_text("NAME = 'editable'\n")
    (project / "sub.py").write_text("VALUE = 1\n")
    finder = EditableFinder({"cx_editable": str(project)})
    sys.meta_path.append(finder)  # setuptools appends its finder
    yield project
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)


class TestEditableInstall:
    def test_package_and_submodule_reload_and_roll_back(
        self, editable: Path, tracker: versionload.Tracker
    ) -> None:
        """A package found by an editable-install finder, and its submodule, reload and roll back."""
        package = importlib.import_module("cx_editable")
        sub = importlib.import_module("cx_editable.sub")
        assert [str(editable)] == list(package.__path__)
        (editable / "sub.py").write_text("VALUE = 2\n")
        (editable / "__init__.py").write_text("NAME = 'edited'\n")
        importlib.invalidate_caches()
        tracker.reload(sub)
        tracker.reload(package)
        assert (sub.VALUE, package.NAME) == (2, "edited")
        tracker.rollback(sub)
        tracker.rollback(package)
        assert (sub.VALUE, package.NAME) == (1, "editable")
        _assert_consistent(tracker, package)
        _assert_consistent(tracker, sub)


# -- zipimport -----------------------------------------------------------------------------


def _write_zip(path: Path, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, textwrap.dedent(text))
    importlib.invalidate_caches()


class TestZipimport:
    def test_modules_inside_a_zip(self, tmp_path: Path, tracker: versionload.Tracker) -> None:
        """Modules and packages in a zip on sys.path reload from the new archive and roll back."""
        archive = tmp_path / "plugins.zip"
        files = {"cx_zmod.py": "VALUE = {}\n", "cx_zpkg/__init__.py": "", "cx_zpkg/sub.py": "X = {}\n"}
        _write_zip(archive, {name: text.format(1) for name, text in files.items()})
        sys.path.insert(0, str(archive))
        module = importlib.import_module("cx_zmod")
        sub = importlib.import_module("cx_zpkg.sub")
        assert module.__spec__ is not None
        assert type(module.__spec__.loader).__name__ == "zipimporter"
        _write_zip(archive, {name: text.format(2) for name, text in files.items()})
        tracker.reload(module)
        tracker.reload(sub)
        assert (module.VALUE, sub.X) == (2, 2)
        assert str(archive) in (tracker.current(module).origin or "")
        tracker.rollback(module, to=1)
        assert module.VALUE == 1
        _assert_consistent(tracker, module)
        _assert_consistent(tracker, sub)


# -- namespace packages --------------------------------------------------------------------


class TestNamespacePackages:
    def test_portions_in_two_roots(self, tmp_path: Path, tracker: versionload.Tracker) -> None:
        """A namespace package spread over two roots, and its portions, reload and roll back."""
        for root, portion in (("one", "a"), ("two", "b")):
            directory = tmp_path / root / "cx_ns"
            directory.mkdir(parents=True)
            (directory / f"{portion}.py").write_text(f"NAME = '{portion}1'\n")
            sys.path.insert(0, str(tmp_path / root))
        importlib.invalidate_caches()
        package = importlib.import_module("cx_ns")
        a = importlib.import_module("cx_ns.a")
        b = importlib.import_module("cx_ns.b")
        assert package.__file__ is None
        assert tracker.current(package).origin is None
        (tmp_path / "two" / "cx_ns" / "b.py").write_text("NAME = 'b2'\n")
        importlib.invalidate_caches()
        assert package is tracker.reload(package)
        tracker.reload(b)
        assert (a.NAME, b.NAME) == ("a1", "b2")
        tracker.rollback(b)
        assert b.NAME == "b1"
        for module in (package, a, b):
            _assert_consistent(tracker, module)


# -- frozen and builtin modules ------------------------------------------------------------


class TestFrozenAndBuiltin:
    def test_frozen_module(self, tracker: versionload.Tracker) -> None:
        """A frozen module imported with the hook is tracked without an origin, reloads and rolls back."""
        sys.modules.pop("__hello__", None)
        module = importlib.import_module("__hello__")
        assert module.__spec__ is not None
        assert module.__spec__.origin == "frozen"
        module.extra = "added later"
        tracker.reload(module)
        assert tracker.current(module).origin is None
        assert [v.reason for v in tracker.history(module)] == ["import", "reload"]
        tracker.rollback(module, to=1)
        assert not hasattr(module, "extra")
        _assert_consistent(tracker, module)

    def test_builtin_module(self, tracker: versionload.Tracker) -> None:
        """A builtin extension module imported with the hook is tracked, reloaded and rolled back."""
        if "xxsubtype" not in sys.builtin_module_names:
            pytest.skip("this interpreter has no builtin xxsubtype module")
        sys.modules.pop("xxsubtype", None)
        module = importlib.import_module("xxsubtype")
        assert module.__spec__ is not None
        assert module.__spec__.origin == "built-in"
        tracker.reload(module)
        tracker.rollback(module, to=1)
        assert [v.number for v in tracker.history(module)] == [1, 2]
        _assert_consistent(tracker, module)


# -- sourceless modules --------------------------------------------------------------------


def _compile_sourceless(tree: ModuleTree, name: str, source: str) -> Path:
    """
    Write ``name.pyc`` as a sourceless distribution has it: next to where the source
    was, with no source and no ``__pycache__``.
    """
    source_path = tree.module(name, source)
    compiled = source_path.with_suffix(".pyc")
    py_compile.compile(str(source_path), cfile=str(compiled), doraise=True)
    source_path.unlink()
    importlib.invalidate_caches()
    return compiled


class TestSourceless:
    def test_pyc_only_module(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """A module shipped as .pyc only reloads the new .pyc and rolls back; it has no source hash."""
        compiled = _compile_sourceless(tree, "cx_pyc", "VALUE = 1\n")
        module = importlib.import_module("cx_pyc")
        assert isinstance(module.__loader__, SourcelessFileLoader)
        _compile_sourceless(tree, "cx_pyc", "VALUE = 2\n")
        tracker.reload(module)
        assert module.VALUE == 2
        assert str(compiled) == tracker.current(module).origin
        assert [v.source_sha256 for v in tracker.history(module)] == [None, None]
        tracker.rollback(module)
        assert module.VALUE == 1
        _assert_consistent(tracker, module)


# -- module __getattr__ --------------------------------------------------------------------


class TestModuleGetattr:
    def test_catch_all_getattr(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """A module whose __getattr__ answers every name reloads and rolls back like any other."""
        tree.module("cx_lazy", "VALUE = 1\ndef __getattr__(name):\n    return 'lazy ' + name\n")
        module = importlib.import_module("cx_lazy")
        tree.module("cx_lazy", "VALUE = 2\ndef __getattr__(name):\n    return 'lazier ' + name\n")
        tracker.reload(module)
        assert module.anything == "lazier anything"
        tracker.rollback(module)
        assert (module.VALUE, module.anything) == (1, "lazy anything")
        _assert_consistent(tracker, module)

    def test_getattr_that_raises_is_never_consulted(self, tracker: versionload.Tracker) -> None:
        """Adopting a file-less module whose __getattr__ raises reads its own attributes, not the hook's."""
        module = types.ModuleType("cx_hostile")
        code = "def __getattr__(name):\n    raise ImportError('lazy import of ' + name + ' failed')\n"
        exec(code, vars(module))
        sys.modules["cx_hostile"] = module
        version = tracker.track(module)
        assert version.origin is None
        module.added = 1
        tracker.rollback(module, to=1)
        assert "added" not in vars(module)
        _assert_consistent(tracker, module)


# -- modules that replace themselves -------------------------------------------------------


class TestSelfReplacingModules:
    def test_class_swap_keeps_the_module(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """A module that swaps its own class during import keeps its history across reloads."""
        source = """\
            import sys, types
            VALUE = {}
            class _Module(types.ModuleType):
                @property
                def doubled(self):
                    return VALUE * 2
            sys.modules[__name__].__class__ = _Module
        """
        tree.module("cx_swap", source.format(1))
        module = importlib.import_module("cx_swap")
        tree.module("cx_swap", source.format(2))
        assert module is tracker.reload(module)
        assert module.doubled == 4
        tracker.rollback(module)
        assert module.VALUE == 1
        _assert_consistent(tracker, module)

    def test_replacement_module_is_what_gets_tracked(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """A module that puts another module in sys.modules has that one tracked, as import returns it."""
        tree.module(
            "cx_replace",
            """\
            import sys, types
            _replacement = types.ModuleType(__name__)
            _replacement.VALUE = 1
            sys.modules[__name__] = _replacement
            """,
        )
        replacement = importlib.import_module("cx_replace")
        assert replacement.VALUE == 1
        assert [v.number for v in tracker.history(replacement)] == [1]
        assert "cx_replace" in tracker.tracked()
        _assert_consistent(tracker, replacement)

    def test_replacement_by_a_non_module(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """A module that puts a plain object in sys.modules imports fine, untracked; reload says why."""
        tree.module(
            "cx_object",
            """\
            import sys
            class _Config:
                VALUE = 1
            sys.modules[__name__] = _Config()
            """,
        )
        config = importlib.import_module("cx_object")
        assert config.VALUE == 1
        assert "cx_object" not in tracker.tracked()
        with pytest.raises(versionload.ModuleNotLoadedError):
            tracker.reload("cx_object")
        with pytest.raises(versionload.NotTrackedError):
            tracker.rollback("cx_object")


# -- __main__ ------------------------------------------------------------------------------


class TestMain:
    def test_run_path_with_the_hook(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """runpy.run_path runs a script with the hook installed; what the script imports is tracked."""
        tree.module("cx_helper", "VALUE = 1\n")
        script = tree.path("script.py")
        script.write_text("import cx_helper\nRESULT = cx_helper.VALUE + 1\n")
        main_before = sys.modules["__main__"]
        namespace = runpy.run_path(str(script), run_name="__main__")
        assert namespace["RESULT"] == 2
        assert sys.modules["__main__"] is main_before
        assert "cx_helper" in tracker.tracked()
        assert "__main__" not in tracker.tracked()

    def test_script_tracks_and_rolls_back_its_own_main(self, tree: ModuleTree) -> None:
        """A script run as __main__ can adopt itself and roll back; reloading it says there is no spec."""
        script = tree.path("main_script.py")
        script.write_text(
            textwrap.dedent(
                """\
                import sys
                import structlog
                import versionload
                structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
                versionload.install()
                import cx_main_helper
                main = sys.modules["__main__"]
                versionload.track(main)
                VALUE = 2
                try:
                    versionload.reload(main)
                except versionload.SpecNotFoundError:
                    print("reload: no spec")
                versionload.rollback(main, to=1)
                print("after rollback:", "VALUE" in vars(main))
                versionload.reload(cx_main_helper)
                print("helper:", [v.number for v in versionload.history(cx_main_helper)])
                versionload.uninstall()
                """
            )
        )
        tree.module("cx_main_helper", "VALUE = 1\n")
        result = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tree.root), *sys.path])},
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["reload: no spec", "after rollback: False", "helper: [1, 2]"]


# -- all of it, then uninstall -------------------------------------------------------------


class TestUninstallAfterEverything:
    def test_import_machinery_is_left_as_it_was(
        self, tree: ModuleTree, tmp_path: Path, editable: Path
    ) -> None:
        """After imports of every kind, uninstall leaves meta_path, path_hooks and the importer cache."""
        meta_path = list(sys.meta_path)
        path_hooks = list(sys.path_hooks)
        tree.module("cx_all_plain", "VALUE = 1\n")
        _compile_sourceless(tree, "cx_all_pyc", "VALUE = 1\n")
        archive = tmp_path / "all.zip"
        _write_zip(archive, {"cx_all_zip.py": "VALUE = 1\n"})
        (tree.root / "cx_all_ns").mkdir()
        (tree.root / "cx_all_ns" / "part.py").write_text("VALUE = 1\n")
        sys.path.insert(0, str(archive))
        importlib.invalidate_caches()
        cache_before = dict(sys.path_importer_cache)
        sys.modules.pop("__hello__", None)

        tracker = versionload.install()
        names = ["cx_all_plain", "cx_all_pyc", "cx_all_zip", "cx_all_ns.part", "cx_editable.sub", "__hello__"]
        for name in names:
            tracker.reload(importlib.import_module(name))
        versionload.uninstall()

        assert meta_path == sys.meta_path
        assert all(a is b for a, b in zip(meta_path, sys.meta_path, strict=True))
        assert path_hooks == sys.path_hooks
        for key, finder in cache_before.items():
            assert sys.path_importer_cache.get(key, finder) is finder
        assert [
            key
            for key, finder in sys.path_importer_cache.items()
            if type(finder).__module__.startswith("versionload")
        ] == []
        for name in names:
            _assert_consistent(tracker, sys.modules[name])


# -- legacy loaders ------------------------------------------------------------------------


class LegacyLoader:
    """
    A loader from before PEP 451: ``load_module`` only, no ``exec_module``.
    """

    def load_module(self, fullname: str) -> types.ModuleType:
        module = types.ModuleType(fullname)
        module.VALUE = 1  # type: ignore[attr-defined]
        module.__loader__ = self
        sys.modules[fullname] = module
        return module


class LegacyFinder:
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        return ModuleSpec(fullname, LegacyLoader()) if fullname == "cx_legacy" else None


class TestLegacyLoader:
    def test_load_module_only_loader_leaves_a_plain_spec(self, tracker: versionload.Tracker) -> None:
        """A legacy loader's import works, its spec carries no versionload state, and track() adopts it."""
        finder = LegacyFinder()
        sys.meta_path.append(finder)
        with pytest.warns(ImportWarning):
            module = importlib.import_module("cx_legacy")
        assert module.VALUE == 1
        spec = module.__spec__
        assert spec is not None
        # The import system never runs the _initializing step for such a loader, so an
        # observer attached to the spec would stay on it for good.
        assert ModuleSpec is type(spec)
        assert "_versionload_observers" not in vars(spec)
        assert "adopted" == tracker.track(module).reason
        _assert_consistent(tracker, module)
