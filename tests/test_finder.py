"""
The import hook: where it sits, what it records, and that nobody else can tell it is there.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import linecache
import pkgutil
import runpy
import sys
import time
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

import versionload

from .helpers import ModuleTree

# A builtin module the interpreter does not import at start-up (which modules are
# builtin differs between Python versions and builds).
BUILTIN_MODULE = next(
    name for name in ("xxsubtype", "_symtable", "_tokenize") if name in sys.builtin_module_names
)


def _ours(finder: object) -> bool:
    return type(finder).__name__ == "VersionedFinder"


def _with_and_without(
    tracker: versionload.Tracker, names: list[str], action: Callable[[], Any]
) -> tuple[Any, Any]:
    """
    Run ``action`` without the hook, forget ``names``, then run it again with the hook.
    """
    tracker.uninstall()
    plain = action()
    for name in names:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    tracker.install()
    hooked = action()
    return plain, hooked


class TestInstall:
    """
    Tracker.install / versionload.install.
    """

    def test_puts_one_finder_first(self) -> None:
        """
        install() puts exactly one finder at the front of sys.meta_path.
        """
        before = list(sys.meta_path)
        tracker = versionload.install()
        assert tracker.finder is sys.meta_path[0]
        assert before == sys.meta_path[1:]
        assert tracker.installed

    def test_twice_changes_nothing(self) -> None:
        """
        A second install() leaves sys.meta_path as the first one left it.
        """
        versionload.install()
        after_first = list(sys.meta_path)
        assert versionload.default_tracker() is versionload.install()
        assert after_first == sys.meta_path
        assert 1 == sum(map(_ours, sys.meta_path))

    def test_tracker_install_twice(self) -> None:
        """
        Tracker.install() twice leaves one finder and returns the tracker.
        """
        tracker = versionload.Tracker()
        assert tracker is tracker.install()
        assert tracker is tracker.install()
        assert [tracker.finder] == [finder for finder in sys.meta_path if finder is tracker.finder]
        tracker.uninstall()

    def test_creating_a_tracker_changes_nothing(self) -> None:
        """
        A Tracker that is not installed leaves sys.meta_path alone.
        """
        before = list(sys.meta_path)
        tracker = versionload.Tracker(include="x.*")
        assert before == sys.meta_path
        assert not tracker.installed

    @pytest.mark.parametrize(
        "bad",
        [42, [1], ["ok", None], "", [""], object()],
    )
    def test_bad_patterns_raise(self, bad: object) -> None:
        """
        include/exclude that are not strings or iterables of non-empty strings raise InvalidArgumentError.
        """
        before = list(sys.meta_path)
        with pytest.raises(versionload.InvalidArgumentError):
            versionload.install(include=bad)  # type: ignore[arg-type]
        with pytest.raises(versionload.InvalidArgumentError):
            versionload.install(exclude=bad)  # type: ignore[arg-type]
        with pytest.raises(versionload.InvalidArgumentError):
            versionload.Tracker(include=bad)  # type: ignore[arg-type]
        assert before == sys.meta_path


class TestUninstall:
    """
    Tracker.uninstall / versionload.uninstall.
    """

    def test_leaves_meta_path_as_it_was(self) -> None:
        """
        uninstall() restores sys.meta_path exactly, the same finder objects in the same order.
        """
        before = list(sys.meta_path)
        versionload.install()
        versionload.uninstall()
        assert len(before) == len(sys.meta_path)
        assert all(a is b for a, b in zip(before, sys.meta_path, strict=True))

    def test_keeps_finders_added_after_install(self) -> None:
        """
        Finders other code inserted while the hook was in place stay where they are.
        """
        versionload.install()
        other = importlib.machinery.PathFinder
        sys.meta_path.insert(0, other)
        versionload.uninstall()
        assert other is sys.meta_path[0]
        assert not any(map(_ours, sys.meta_path))

    def test_twice_and_when_not_installed(self) -> None:
        """
        uninstall() when nothing is installed changes nothing.
        """
        before = list(sys.meta_path)
        versionload.uninstall()
        versionload.uninstall()
        assert before == sys.meta_path

    def test_keeps_histories(self, tree: ModuleTree) -> None:
        """
        Histories recorded while installed are still there after uninstall().
        """
        versionload.install()
        tree.module("fd_kept", "X = 1\n")
        import fd_kept

        versionload.uninstall()
        assert 1 == versionload.current(fd_kept).number


class TestRecording:
    """
    What a first import records.
    """

    def test_import_records_version_one(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A module imported with the hook has version 1, reason "import", with its namespace.
        """
        tree.module("fd_plain", "X = 1\n")
        import fd_plain

        (version,) = tracker.history(fd_plain)
        assert (1, "import") == (version.number, version.reason)
        assert dict(vars(fd_plain)) == dict(version.bindings)

    def test_packages_and_submodules(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A package and its submodules are each recorded once.
        """
        tree.write(
            {"fd_pkg/__init__.py": "from . import a\n", "fd_pkg/a.py": "A = 1\n", "fd_pkg/b.py": "B = 2\n"}
        )
        import fd_pkg.b

        assert 2 == fd_pkg.b.B
        assert {"fd_pkg", "fd_pkg.a", "fd_pkg.b"} <= set(tracker.tracked())
        assert [1] == [v.number for v in tracker.history("fd_pkg.a")]

    @pytest.mark.parametrize(
        ("include", "exclude", "expected"),
        [
            ("fd_app.*", None, {"fd_app", "fd_app.core", "fd_app.secret"}),
            ("fd_app", None, {"fd_app"}),
            ("fd_app.*", "fd_app.secret", {"fd_app", "fd_app.core"}),
            (["fd_app.core", "fd_other"], None, {"fd_app.core", "fd_other"}),
            (None, "fd_app.*", {"fd_other"}),
            (None, ["fd_app.core", "fd_other"], {"fd_app", "fd_app.secret"}),
        ],
    )
    def test_include_exclude(
        self, tree: ModuleTree, include: object, exclude: object, expected: set[str]
    ) -> None:
        """
        Only names matching include and not exclude are tracked; "pkg.*" covers pkg itself.
        """
        tree.write(
            {
                "fd_app/__init__.py": "",
                "fd_app/core.py": "",
                "fd_app/secret.py": "",
                "fd_other.py": "",
            }
        )
        tracker = versionload.install(include=include, exclude=exclude)  # type: ignore[arg-type]
        import fd_app.core
        import fd_app.secret  # noqa: F401
        import fd_other  # noqa: F401

        assert expected == {name for name in tracker.tracked() if name.startswith("fd_")}

    def test_failed_first_import_records_nothing(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A first import that raises leaves no history and no sys.modules entry.
        """
        tree.module("fd_fails", "X = 1\nraise ValueError('first import')\n")
        with pytest.raises(ValueError, match="first import"):
            import fd_fails  # noqa: F401
        assert "fd_fails" not in sys.modules
        assert "fd_fails" not in tracker.tracked()

    def test_failed_first_import_raises_as_without_hook(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        The exception of a failing first import has the same type, args and frames with and without the hook.
        """
        tree.module("fd_fails2", "def inner():\n    raise ValueError('boom', 2)\n\ninner()\n")

        def attempt() -> tuple[type[BaseException], tuple[Any, ...], list[tuple[str, str, int | None]]]:
            try:
                importlib.import_module("fd_fails2")
            except ValueError as error:
                frames = traceback.extract_tb(error.__traceback__)
                return type(error), error.args, [(f.filename, f.name, f.lineno) for f in frames]
            raise AssertionError("the import did not fail")

        plain, hooked = _with_and_without(tracker, ["fd_fails2"], attempt)
        assert plain == hooked
        assert "fd_fails2" not in tracker.tracked()

    def test_missing_module_raises_as_without_hook(self, tracker: versionload.Tracker) -> None:
        """
        Importing a module that does not exist raises the same ModuleNotFoundError.
        """

        def attempt() -> tuple[str, str | None, int]:
            try:
                importlib.import_module("fd_no_such_module")
            except ModuleNotFoundError as error:
                return str(error), error.name, len(traceback.extract_tb(error.__traceback__))
            raise AssertionError("the import did not fail")

        plain, hooked = _with_and_without(tracker, [], attempt)
        assert plain == hooked

    def test_non_module_in_sys_modules_is_not_tracked(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A module that puts a non-module object into sys.modules is imported as that object, untracked.
        """
        tree.module(
            "fd_object",
            "import sys\nclass Settings:\n    DEBUG = True\nsys.modules[__name__] = Settings()\n",
        )
        import fd_object

        assert fd_object.DEBUG is True
        assert "fd_object" not in tracker.tracked()

    def test_namespace_package(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Namespace packages and their modules import and are recorded.
        """
        tree.write({"fd_ns/mod.py": "X = 1\n"})
        import fd_ns.mod

        assert 1 == fd_ns.mod.X
        assert fd_ns.__file__ is None
        assert {"fd_ns", "fd_ns.mod"} <= set(tracker.tracked())
        assert tracker.current("fd_ns").origin is None

    def test_zip_import(self, tracker: versionload.Tracker, tmp_path: Path) -> None:
        """
        Modules and packages inside a zip file import through zipimport and are recorded.
        """
        archive = tmp_path / "bundle.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("fd_zipped.py", "X = 'zipped'\n")
            bundle.writestr("fd_zpkg/__init__.py", "")
            bundle.writestr("fd_zpkg/sub.py", "Y = 2\n")
        sys.path.insert(0, str(archive))
        import fd_zipped
        import fd_zpkg.sub

        assert "zipped" == fd_zipped.X
        assert 2 == fd_zpkg.sub.Y
        assert "zipimporter" == type(fd_zipped.__loader__).__name__
        assert {"fd_zipped", "fd_zpkg", "fd_zpkg.sub"} <= set(tracker.tracked())

    def test_builtin_module(self, tracker: versionload.Tracker) -> None:
        """
        A builtin module imports through BuiltinImporter and is recorded without origin.
        """
        sys.modules.pop(BUILTIN_MODULE, None)
        builtin = importlib.import_module(BUILTIN_MODULE)

        assert importlib.machinery.BuiltinImporter is builtin.__loader__
        assert tracker.current(builtin).origin is None

    def test_frozen_module(self, tracker: versionload.Tracker) -> None:
        """
        A frozen module imports through FrozenImporter and is recorded.
        """
        sys.modules.pop("__hello__", None)
        import __hello__

        assert importlib.machinery.FrozenImporter is __hello__.__loader__
        assert "frozen" == __hello__.__spec__.origin
        assert "import" == tracker.current(__hello__).reason

    def test_pytest_assertion_rewriting_still_applies(self, tracker: versionload.Tracker) -> None:
        """
        pytest's own meta-path hook stays behind ours and keeps working (this assert is rewritten).
        """
        names = [type(finder).__name__ for finder in sys.meta_path]
        assert "VersionedFinder" == names[0]
        assert "AssertionRewritingHook" in names


class TestInvisible:
    """
    With the hook installed, nothing the import system hands out looks different.
    """

    def test_find_spec_result_identical(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        importlib.util.find_spec returns a plain ModuleSpec with the same contents.
        """
        tree.write({"fd_spec/__init__.py": "", "fd_spec/sub.py": ""})

        def find() -> tuple[object, ...]:
            results = []
            for name in ("fd_spec", "json", "sys", "fd_missing"):
                spec = importlib.util.find_spec(name)
                results.append(None if spec is None else (type(spec), spec, sorted(vars(spec))))
            return tuple(results)

        plain, hooked = _with_and_without(tracker, [], find)
        assert plain == hooked
        assert "fd_spec" not in tracker.tracked()

    def test_module_spec_and_loader_after_import(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        After an import, __spec__ is exactly a ModuleSpec with no extra keys, and __loader__ the real loader.
        """
        tree.write({"fd_attrs/__init__.py": "", "fd_attrs/mod.py": "X = 1\n"})

        def load() -> tuple[object, ...]:
            module = importlib.import_module("fd_attrs.mod")
            spec = module.__spec__
            assert spec is not None
            return (
                type(spec),
                sorted(vars(spec)),
                type(module.__loader__),
                module.__loader__ is spec.loader,
                spec,
                sorted(vars(module)),
            )

        plain, hooked = _with_and_without(tracker, ["fd_attrs", "fd_attrs.mod"], load)
        assert plain == hooked
        assert importlib.machinery.ModuleSpec is hooked[0]
        assert "fd_attrs.mod" in tracker.tracked()

    def test_runpy(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        runpy.run_module gives the same globals and spec with the hook.
        """
        tree.write(
            {
                "fd_run/__init__.py": "",
                "fd_run/__main__.py": "RESULT = __name__\n",
                "fd_run/tool.py": "R = 1\n",
            }
        )

        def run() -> tuple[object, ...]:
            package = runpy.run_module("fd_run", run_name="__main__")
            tool = runpy.run_module("fd_run.tool")
            return (
                package["RESULT"],
                type(package["__spec__"]),
                package["__spec__"],
                sorted(package),
                sorted(tool),
            )

        plain, hooked = _with_and_without(tracker, ["fd_run", "fd_run.tool", "fd_run.__main__"], run)
        assert plain == hooked

    def test_pkgutil(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        pkgutil.iter_modules, walk_packages and get_data behave the same with the hook.
        """
        tree.write(
            {
                "fd_walk/__init__.py": "",
                "fd_walk/a.py": "",
                "fd_walk/inner/__init__.py": "",
                "fd_walk/inner/b.py": "",
                "fd_walk/data.txt": "payload",
            }
        )

        def walk() -> tuple[object, ...]:
            package = importlib.import_module("fd_walk")
            listed = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
            walked = sorted(info.name for info in pkgutil.walk_packages(package.__path__, "fd_walk."))
            return listed, walked, pkgutil.get_data("fd_walk", "data.txt")

        plain, hooked = _with_and_without(tracker, ["fd_walk", "fd_walk.inner"], walk)
        assert plain == hooked
        assert (["a", "inner"], ["fd_walk.a", "fd_walk.inner", "fd_walk.inner.b"], b"payload") == hooked

    def test_inspect_and_linecache(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        inspect.getsource and linecache read a hooked module's source as usual.
        """
        source = "def f():\n    return 'source line'\n"
        tree.module("fd_inspect", source)
        import fd_inspect

        assert source == inspect.getsource(fd_inspect)
        assert source == inspect.getsource(fd_inspect.f)
        assert "    return 'source line'\n" == linecache.getline(fd_inspect.__file__, 2)
        assert fd_inspect.__file__ == inspect.getsourcefile(fd_inspect)

    def test_inspect_after_reload(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        After a versionload reload, inspect.getsource returns the new source.
        """
        path = tree.module("fd_inspect2", "def f():\n    return 1\n")
        import fd_inspect2

        path.write_text("def f():\n    return 'two'\n")
        linecache.checkcache(str(path))
        tracker.reload(fd_inspect2)
        assert "def f():\n    return 'two'\n" == inspect.getsource(fd_inspect2.f)

    def test_import_of_existing_parent_attribute(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A submodule that its package imported itself is recorded once, with a plain spec.
        """
        tree.write({"fd_self/__init__.py": "from . import child\n", "fd_self/child.py": "C = 1\n"})
        import fd_self.child

        assert importlib.machinery.ModuleSpec is type(fd_self.child.__spec__)
        assert [1] == [v.number for v in tracker.history("fd_self.child")]


class TestImportEnd:
    """
    When a first import ends, as the hook sees it: after the module ran and was bound,
    with nothing of the hook's visible while it runs.
    """

    def test_module_imported_again_while_it_runs_is_recorded_once_complete(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A package imported again by its own code and its submodule's has one version 1, with every name.
        """
        tree.write(
            {
                "fe_again/__init__.py": "import fe_again\nfrom fe_again import sub\nAFTER = sub.SUB + 1\n",
                "fe_again/sub.py": "import fe_again\nfrom fe_again import sub as again\nSUB = 1\n",
            }
        )
        import fe_again

        history = tracker.history(fe_again)
        assert [(1, "import")] == [(v.number, v.reason) for v in history]
        assert 2 == history[0].bindings["AFTER"]
        assert [1] == [v.number for v in tracker.history("fe_again.sub")]

    def test_code_sees_the_stdlib_spec_and_loader(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        While a module runs, its __spec__ and __loader__ are of the stdlib's own classes.
        """
        tree.module("fe_types", "SPEC_TYPE = type(__spec__)\nLOADER_TYPE = type(__loader__)\n")
        import fe_types

        assert importlib.machinery.ModuleSpec is fe_types.SPEC_TYPE
        assert importlib.machinery.SourceFileLoader is fe_types.LOADER_TYPE
        assert 1 == tracker.current(fe_types).number

    def test_loader_keeps_no_attribute_of_the_hook(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Once imported, a module's loader has exactly the attributes the stdlib gave it.
        """
        tree.module("fe_loader", "X = 1\n")
        import fe_loader

        assert {"name", "path"} == set(vars(fe_loader.__loader__))

    def test_module_reading_its_own_file_while_it_runs(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Code that reads its own source through __loader__ still gets it, and version 1 hashes what ran.
        """
        source = "SOURCE = __loader__.get_data(__file__)\nSTATS = __loader__.path_stats(__file__)\n"
        tree.module("fe_reads", source)
        import fe_reads

        assert source.encode() == fe_reads.SOURCE
        assert len(source) == fe_reads.STATS["size"]
        expected = hashlib.sha256(source.encode()).hexdigest()
        assert expected == tracker.current(fe_reads).source_sha256

    def test_loader_methods_kept_by_the_module_work_after_the_import(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Code that keeps its loader's get_data and path_stats while it runs can call them afterwards.
        """
        source = "READ = __loader__.get_data\nSTAT = __loader__.path_stats\n"
        path = tree.module("fe_keeps", source)
        import fe_keeps

        assert source.encode() == fe_keeps.READ(str(path))
        assert len(source) == fe_keeps.STAT(str(path))["size"]
        assert 1 == tracker.current(fe_keeps).number

    def test_failed_import_leaves_nothing_behind(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A first import that raises records nothing, and the next import of the fixed module records version 1.
        """
        path = tree.module("fe_broken", "raise ValueError('not yet')\n")
        with pytest.raises(ValueError, match="not yet"):
            import fe_broken
        assert "fe_broken" not in tracker.tracked()
        path.write_text("FIXED = True\n")
        importlib.invalidate_caches()
        import fe_broken

        assert [(1, "import")] == [(v.number, v.reason) for v in tracker.history(fe_broken)]
        assert {"name", "path"} == set(vars(fe_broken.__loader__))


class TestSeveralTrackers:
    """
    More than one tracker installed at once (an application's and a test's).
    """

    def test_each_records_imports(self, tree: ModuleTree) -> None:
        """
        Two installed trackers both record a first import.
        """
        outer = versionload.Tracker().install()
        inner = versionload.Tracker().install()
        tree.module("fd_two", "X = 1\n")
        import fd_two

        assert [("import", 1)] == [(v.reason, v.number) for v in inner.history(fd_two)]
        assert [("import", 1)] == [(v.reason, v.number) for v in outer.history(fd_two)]
        assert importlib.machinery.ModuleSpec is type(fd_two.__spec__)

    def test_each_records_plain_reloads(self, tree: ModuleTree) -> None:
        """
        Two installed trackers both record a reload that other code runs with importlib.reload.
        """
        outer = versionload.Tracker().install()
        inner = versionload.Tracker().install()
        path = tree.module("fd_two_reload", "X = 1\n")
        import fd_two_reload

        path.write_text("X = 22\n")
        assert fd_two_reload is importlib.reload(fd_two_reload)
        assert 22 == fd_two_reload.X
        assert [1, 2] == [v.number for v in inner.history(fd_two_reload)]
        assert [1, 2] == [v.number for v in outer.history(fd_two_reload)]
        assert type(fd_two_reload.__loader__).__name__ == "SourceFileLoader"

    def test_uninstalling_one_keeps_the_other(self, tree: ModuleTree) -> None:
        """
        Uninstalling one tracker leaves the other's finder recording.
        """
        outer = versionload.Tracker().install()
        inner = versionload.Tracker().install()
        outer.uninstall()
        tree.module("fd_two_left", "X = 1\n")
        import fd_two_left

        assert [1] == [v.number for v in inner.history(fd_two_left)]
        assert "fd_two_left" not in outer.tracked()


class TestInvisibleToPlainReload:
    """
    What importlib.reload, run by other code, shows with the hook installed.
    """

    def test_failing_reload_traceback_identical(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A plain importlib.reload whose module code raises shows the same frames with and without the hook.
        """
        path = tree.module("fd_reload_tb", "X = 1\n")
        import fd_reload_tb

        path.write_text("def inner():\n    raise ValueError('reload failed')\n\ninner()\n")

        def attempt() -> list[tuple[str, str, int | None]]:
            try:
                importlib.reload(fd_reload_tb)
            except ValueError as error:
                frames = traceback.extract_tb(error.__traceback__)
                return [(frame.filename, frame.name, frame.lineno) for frame in frames]
            raise AssertionError("the reload did not fail")

        tracker.uninstall()
        plain = attempt()
        tracker.install()
        hooked = attempt()
        assert plain == hooked
        assert [1] == [v.number for v in tracker.history(fd_reload_tb)]

    def test_spec_and_loader_during_and_after_reload(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        The module's code sees its real loader during a plain reload, and a plain ModuleSpec afterwards.
        """
        path = tree.module("fd_reload_attrs", "X = 1\n")
        import fd_reload_attrs

        path.write_text("SEEN = type(__loader__).__name__\n")
        importlib.reload(fd_reload_attrs)
        assert "SourceFileLoader" == fd_reload_attrs.SEEN
        assert importlib.machinery.ModuleSpec is type(fd_reload_attrs.__spec__)
        assert fd_reload_attrs.__spec__.loader is fd_reload_attrs.__loader__
        assert "_versionload" not in " ".join(vars(fd_reload_attrs.__spec__))
        assert [1, 2] == [v.number for v in tracker.history(fd_reload_attrs)]

    def test_relative_import_during_plain_reload(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A submodule whose code imports relatively (reading __spec__) is reloaded and recorded once.
        """
        tree.write({"fd_rel/__init__.py": "", "fd_rel/sibling.py": "S = 1\n", "fd_rel/mod.py": "X = 1\n"})
        import fd_rel.mod

        tree.path("fd_rel/mod.py").write_text("from . import sibling\nfrom .sibling import S\nX = S + 21\n")
        assert fd_rel.mod is importlib.reload(fd_rel.mod)
        assert 22 == fd_rel.mod.X
        assert [1, 2] == [v.number for v in tracker.history("fd_rel.mod")]
        assert importlib.machinery.ModuleSpec is type(fd_rel.mod.__spec__)

    def test_plain_reload_inside_an_except_block(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A plain reload run while another exception is handled is recorded when it succeeds, not when it fails.
        """
        path = tree.module("fd_in_except", "X = 1\n")
        import fd_in_except

        path.write_text("X = 22\n")
        try:
            raise KeyError("being handled")
        except KeyError:
            importlib.reload(fd_in_except)
            path.write_text("X = 333\nraise ValueError\n")
            with pytest.raises(ValueError):  # noqa: PT011 - the module's own bare ValueError
                importlib.reload(fd_in_except)
        assert [1, 2] == [v.number for v in tracker.history(fd_in_except)]
        assert 22 == tracker.current(fd_in_except).bindings["X"]

    def test_keyboard_interrupt_in_plain_reload_records_nothing(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A plain reload interrupted by KeyboardInterrupt records no version.
        """
        path = tree.module("fd_interrupted", "X = 1\n")
        import fd_interrupted

        path.write_text("X = 2\nraise KeyboardInterrupt\n")
        with pytest.raises(KeyboardInterrupt):
            importlib.reload(fd_interrupted)
        assert [1] == [v.number for v in tracker.history(fd_interrupted)]
        assert importlib.machinery.ModuleSpec is type(fd_interrupted.__spec__)


class _CountingLoader(importlib.machinery.SourceFileLoader):
    """
    A source loader of its own (as editable installs and import-rewriting tools have):
    the stdlib's cache check, with file reads of its own.
    """

    reads: ClassVar[list[str]] = []

    def get_data(self, path: str) -> bytes:
        if path.endswith(".py"):
            _CountingLoader.reads.append(path)
        with open(path, "rb") as file:
            return file.read()


class _CountingFinder:
    """
    Finds ``sl_*`` modules in one directory with `_CountingLoader`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, name: str, path: object = None, target: object = None) -> Any:
        file = self.root / f"{name}.py"
        if not name.startswith("sl_") or not file.exists():
            return None
        return importlib.util.spec_from_file_location(name, file, loader=_CountingLoader(name, str(file)))


class TestLoaderOfItsOwn:
    """
    Modules loaded by a subclass of the stdlib's source loader: recorded, hashed and
    reloaded from what is on disk, with or without bytecode caches.
    """

    @pytest.fixture(name="counting")
    def _counting(self, tree: ModuleTree, tracker: versionload.Tracker) -> Any:
        finder = _CountingFinder(tree.root)
        # Right after versionload's finder, which asks the finders after it.
        sys.meta_path.insert(1, finder)
        _CountingLoader.reads.clear()
        yield finder
        sys.meta_path.remove(finder)

    def test_first_import_is_recorded_with_its_hash(
        self, tree: ModuleTree, tracker: versionload.Tracker, counting: Any, bytecode: bool
    ) -> None:
        """Version 1 of a module its own loader ran holds the hash of the source it ran."""
        path = tree.module("sl_first", "VALUE = 1\n")
        module = importlib.import_module("sl_first")
        assert type(module.__loader__) is _CountingLoader
        (version,) = tracker.history(module)
        assert ("import", hashlib.sha256(path.read_bytes()).hexdigest()) == (
            version.reason,
            version.source_sha256,
        )

    def test_second_import_from_the_cache_is_recorded_with_its_hash(
        self, tree: ModuleTree, tracker: versionload.Tracker, counting: Any, bytecode: bool
    ) -> None:
        """Imported again (from the .pyc when one was written), the hash is still the source's."""
        path = tree.module("sl_again", "VALUE = 2\n")
        # A .pyc written within the filesystem's timestamp granularity (20 ms here) of
        # its source's last change proves nothing: the hash would be None then.
        time.sleep(0.05)
        importlib.import_module("sl_again")
        del sys.modules["sl_again"]
        module = importlib.import_module("sl_again")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == tracker.current(module).source_sha256
        assert module.__cached__ is None or Path(module.__cached__).exists() is bytecode

    def test_reload_reads_through_the_loader_and_runs_the_edit(
        self, tree: ModuleTree, tracker: versionload.Tracker, counting: Any, bytecode: bool
    ) -> None:
        """A reload reads the source with the loader's own get_data and records what it read."""
        path = tree.module("sl_edit", "VALUE = 1\n")
        module = importlib.import_module("sl_edit")
        path.write_text("VALUE = 22\n")
        before = len(_CountingLoader.reads)
        tracker.reload(module)
        assert 22 == module.VALUE
        assert [str(path)] == _CountingLoader.reads[before:]
        assert hashlib.sha256(b"VALUE = 22\n").hexdigest() == tracker.current(module).source_sha256

    def test_stale_bytecode_never_runs(
        self, tree: ModuleTree, tracker: versionload.Tracker, counting: Any
    ) -> None:
        """An edit the .pyc check cannot see (same size, same mtime) still reloads the new code."""
        sys.dont_write_bytecode = False
        path = tree.module("sl_stale", "VALUE = 1\n")
        module = importlib.import_module("sl_stale")
        assert Path(module.__cached__).exists()
        tree.edit_keeping_stat(path, "VALUE = 7\n")
        tracker.reload(module)
        assert 7 == module.VALUE
        assert hashlib.sha256(b"VALUE = 7\n").hexdigest() == tracker.current(module).source_sha256
