"""
`reload`: the contract of ``importlib.reload``, plus a recorded version per reload.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import sys
import types
from pathlib import Path

import pytest

import versionload

from .helpers import ModuleTree

# A builtin module the interpreter does not import at start-up (which modules are
# builtin differs between Python versions and builds).
BUILTIN_MODULE = next(
    name for name in ("xxsubtype", "_symtable", "_tokenize") if name in sys.builtin_module_names
)

# Every test here runs with bytecode writing off and on (see the fixture).
pytestmark = pytest.mark.usefixtures("bytecode")


class TestReload:
    """
    Tracker.reload and versionload.reload.
    """

    def test_returns_the_same_module_object(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A reload returns the very module object it was given.
        """
        tree.module("rl_same", "X = 1\n")
        import rl_same

        assert rl_same is tracker.reload(rl_same)
        assert rl_same is sys.modules["rl_same"]

    def test_accepts_a_module_name(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A name in sys.modules is reloaded like the module object itself.
        """
        path = tree.module("rl_byname", "X = 1\n")
        import rl_byname

        path.write_text("X = 2\n")
        assert rl_byname is tracker.reload("rl_byname")
        assert 2 == rl_byname.X

    @pytest.mark.parametrize("bad", [42, None, object(), b"rl_bytes", ["rl_list"]])
    def test_non_module_raises_not_a_module_error(self, tracker: versionload.Tracker, bad: object) -> None:
        """
        Anything but a module or a string is a NotAModuleError, which is also a TypeError.
        """
        with pytest.raises(versionload.NotAModuleError) as caught:
            tracker.reload(bad)  # type: ignore[arg-type]
        assert isinstance(caught.value, TypeError)
        with pytest.raises(TypeError):
            importlib.reload(bad)  # type: ignore[arg-type]

    def test_unknown_name_raises_module_not_loaded(self, tracker: versionload.Tracker) -> None:
        """
        A name that is not in sys.modules is a ModuleNotLoadedError, an ImportError.
        """
        with pytest.raises(versionload.ModuleNotLoadedError) as caught:
            tracker.reload("rl_no_such_module_anywhere")
        assert isinstance(caught.value, ImportError)
        assert "rl_no_such_module_anywhere" == caught.value.name
        assert () == tracker.tracked()

    def test_module_not_in_sys_modules_raises(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A module object removed from sys.modules cannot be reloaded, as with importlib.reload.
        """
        tree.module("rl_gone", "X = 1\n")
        import rl_gone

        del sys.modules["rl_gone"]
        with pytest.raises(ImportError) as stdlib:
            importlib.reload(rl_gone)
        with pytest.raises(versionload.ModuleNotLoadedError) as caught:
            tracker.reload(rl_gone)
        assert stdlib.value.name == caught.value.name
        assert "rl_gone" not in sys.modules

    def test_parent_not_imported_raises(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A submodule whose parent left sys.modules raises ModuleNotLoadedError naming the parent.
        """
        tree.module("rl_parent.child", "X = 1\n")
        import rl_parent.child

        child = rl_parent.child
        del sys.modules["rl_parent"]
        with pytest.raises(ImportError) as stdlib:
            importlib.reload(child)
        with pytest.raises(versionload.ModuleNotLoadedError) as caught:
            tracker.reload(child)
        assert "rl_parent" == stdlib.value.name == caught.value.name
        assert 1 == child.X

    def test_deleted_file_raises_spec_not_found(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A module whose file was deleted raises SpecNotFoundError, a ModuleNotFoundError.
        """
        tree.module("rl_deleted", "X = 1\n")
        import rl_deleted

        tree.remove("rl_deleted.py")
        with pytest.raises(versionload.SpecNotFoundError) as caught:
            tracker.reload(rl_deleted)
        assert isinstance(caught.value, ModuleNotFoundError)
        assert isinstance(caught.value, versionload.ReloadError)
        assert "rl_deleted" == caught.value.name
        assert 1 == rl_deleted.X
        assert [1] == [v.number for v in tracker.history(rl_deleted)]
        with pytest.raises(ModuleNotFoundError):
            importlib.reload(rl_deleted)

    def test_submodule_spec_is_found_through_the_parent_path(
        self, tree: ModuleTree, tracker: versionload.Tracker, tmp_path
    ) -> None:
        """
        A submodule is found again through its parent's __path__, not through sys.path.
        """
        tree.module("rl_pathpkg.__init__", "")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "extra.py").write_text("X = 1\n")
        import rl_pathpkg

        rl_pathpkg.__path__.append(str(elsewhere))
        importlib.invalidate_caches()
        import rl_pathpkg.extra

        (elsewhere / "extra.py").write_text("X = 2\n")
        tracker.reload(rl_pathpkg.extra)
        assert 2 == rl_pathpkg.extra.X

    def test_redefined_names_are_rebound(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Names the new source defines again are bound to the new objects.
        """
        path = tree.module("rl_rebind", "def f():\n    return 1\nVALUE = 'one'\n")
        import rl_rebind

        old_f = rl_rebind.f
        path.write_text("def f():\n    return 2\nVALUE = 'two, longer'\n")
        tracker.reload(rl_rebind)
        assert 2 == rl_rebind.f()
        assert old_f is not rl_rebind.f
        assert "two, longer" == rl_rebind.VALUE

    def test_name_no_longer_defined_survives(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A name the new source does not define keeps its old binding, as with importlib.reload.
        """
        path = tree.module("rl_survive", "OLD = object()\nNEW = 1\n")
        import rl_survive

        old = rl_survive.OLD
        path.write_text("NEW = 2\n")
        tracker.reload(rl_survive)
        assert old is rl_survive.OLD
        assert 2 == rl_survive.NEW
        assert "OLD" in tracker.current(rl_survive).names

    def test_cache_idiom_keeps_its_cache(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        The ``try: cache / except NameError: cache = {}`` idiom keeps the same cache object.
        """
        source = "try:\n    cache\nexcept NameError:\n    cache = {}\nGENERATION = %d\n"
        path = tree.module("rl_cache", source % 1)
        import rl_cache

        cache = rl_cache.cache
        cache["kept"] = True
        path.write_text(source % 22)
        tracker.reload(rl_cache)
        assert 22 == rl_cache.GENERATION
        assert cache is rl_cache.cache
        assert {"kept": True} == rl_cache.cache

    def test_from_import_elsewhere_keeps_old_function(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A ``from m import f`` in another module still holds the old function after a reload.
        """
        path = tree.module("rl_lib", "def f():\n    return 'old'\n")
        tree.module("rl_user", "from rl_lib import f\n")
        import rl_lib
        import rl_user

        path.write_text("def f():\n    return 'new!'\n")
        tracker.reload(rl_lib)
        assert "new!" == rl_lib.f()
        assert "old" == rl_user.f()

    def test_old_instances_keep_old_class(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        An instance made before the reload keeps the old class; new instances get the new one.
        """
        path = tree.module("rl_cls", "class C:\n    def who(self):\n        return 'old'\n")
        import rl_cls

        old_instance = rl_cls.C()
        old_class = rl_cls.C
        path.write_text("class C:\n    def who(self):\n        return 'new!'\n")
        tracker.reload(rl_cls)
        assert old_class is type(old_instance)
        assert "old" == old_instance.who()
        assert "new!" == rl_cls.C().who()
        assert not isinstance(old_instance, rl_cls.C)

    def test_half_failed_first_import_can_be_reimported_then_reloaded(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A module whose first import raised half-way imports cleanly once fixed, then reloads.
        """
        path = tree.module("rl_half", "A = 1\nraise RuntimeError('half-way')\n")
        with pytest.raises(RuntimeError, match="half-way"):
            import rl_half
        assert "rl_half" not in sys.modules
        assert "rl_half" not in tracker.tracked()
        path.write_text("A = 1\nB = 2\n")
        importlib.invalidate_caches()
        import rl_half

        path.write_text("A = 10\nB = 20\n")
        assert rl_half is tracker.reload(rl_half)
        assert (10, 20) == (rl_half.A, rl_half.B)
        assert [("import", 1), ("reload", 2)] == [(v.reason, v.number) for v in tracker.history(rl_half)]

    def test_builtin_module_reloads_as_importlib_does(self, tracker: versionload.Tracker) -> None:
        """
        A builtin module reloads (its init is not run again) and records a version without source.
        """
        sys.modules.pop(BUILTIN_MODULE, None)
        builtin = importlib.import_module(BUILTIN_MODULE)

        assert "built-in" == builtin.__spec__.origin
        functions = {name: value for name, value in vars(builtin).items() if not name.startswith("__")}
        assert builtin is tracker.reload(builtin)
        assert all(vars(builtin)[name] is value for name, value in functions.items())
        assert ["import", "reload"] == [v.reason for v in tracker.history(builtin)]
        assert tracker.current(builtin).source_sha256 is None
        assert tracker.current(builtin).origin is None

    def test_extension_module_reloads_as_importlib_does(self, tracker: versionload.Tracker) -> None:
        """
        An extension module reloads through its own loader and records a version with its file, no hash.
        """
        import _bisect

        assert isinstance(_bisect.__loader__, importlib.machinery.ExtensionFileLoader)
        function = _bisect.bisect_left
        assert _bisect is tracker.reload(_bisect)
        assert function is _bisect.bisect_left
        version = tracker.current(_bisect)
        assert ("reload", _bisect.__file__, None) == (version.reason, version.origin, version.source_sha256)

    def test_zipped_module_reloads(self, tracker: versionload.Tracker, tmp_path) -> None:
        """
        A module imported from a zip file reloads through zipimport and records no source hash.
        """
        import zipfile

        archive = tmp_path / "bundle.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("rl_zipped.py", "X = 1\n")
        sys.path.insert(0, str(archive))
        import rl_zipped

        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("rl_zipped.py", "X = 2\nY = 3\n")
        importlib.invalidate_caches()
        assert rl_zipped is tracker.reload(rl_zipped)
        assert (2, 3) == (rl_zipped.X, rl_zipped.Y)
        assert tracker.current(rl_zipped).source_sha256 is None

    def test_sourceless_module_reloads(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A module imported from a .pyc without source reloads through its loader, with no source hash.
        """
        import py_compile

        source = tree.module("rl_sourceless", "X = 1\n")
        compiled = tree.path("rl_sourceless.pyc")
        py_compile.compile(str(source), cfile=str(compiled), doraise=True)
        tree.remove("rl_sourceless.py")
        import rl_sourceless

        assert isinstance(rl_sourceless.__loader__, importlib.machinery.SourcelessFileLoader)
        assert rl_sourceless is tracker.reload(rl_sourceless)
        assert 1 == rl_sourceless.X
        assert ["import", "reload"] == [v.reason for v in tracker.history(rl_sourceless)]
        assert tracker.current(rl_sourceless).source_sha256 is None

    def test_reload_of_sys_works(self, tracker: versionload.Tracker) -> None:
        """
        Even ``sys`` reloads as importlib.reload reloads it, keeping its state.
        """
        path_before = sys.path
        assert sys is tracker.reload(sys)
        assert path_before is sys.path
        assert "reload" == tracker.current(sys).reason
        assert tracker.current(sys).source_sha256 is None

    def test_module_replacing_itself_in_sys_modules(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A module that replaces itself in sys.modules while executing: the replacement is returned.
        """
        path = tree.module("rl_replace", "X = 1\n")
        import rl_replace

        path.write_text(
            "import sys, types\n"
            "X = 2\n"
            "_other = types.ModuleType(__name__)\n"
            "_other.REPLACED = True\n"
            "sys.modules[__name__] = _other\n"
        )
        result = tracker.reload(rl_replace)
        assert result is sys.modules["rl_replace"]
        assert result is not rl_replace
        assert result.REPLACED is True
        assert 2 == rl_replace.X

    @pytest.mark.parametrize("how", ["deleted", "none"])
    def test_missing_or_none_loader(self, tree: ModuleTree, tracker: versionload.Tracker, how: str) -> None:
        """
        A module whose __loader__ was deleted or set to None still reloads from its file.
        """
        path = tree.module("rl_noloader", "X = 1\n")
        import rl_noloader

        if how == "deleted":
            del rl_noloader.__loader__
        else:
            rl_noloader.__loader__ = None
        path.write_text("X = 2\n")
        tracker.reload(rl_noloader)
        assert 2 == rl_noloader.X
        assert rl_noloader.__loader__ is rl_noloader.__spec__.loader

    def test_module_turned_into_package(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A module replaced on disk by a package of the same name reloads as the package.
        """
        tree.module("rl_topkg", "KIND = 'module'\n")
        import rl_topkg

        tree.remove("rl_topkg.py")
        tree.write({"rl_topkg/__init__.py": "KIND = 'package'\n"})
        tracker.reload(rl_topkg)
        assert "package" == rl_topkg.KIND
        assert [str(tree.path("rl_topkg"))] == list(rl_topkg.__path__)
        assert rl_topkg.__file__ == str(tree.path("rl_topkg/__init__.py"))

    def test_namespace_package_turned_regular(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A namespace package that gained an __init__.py reloads as a regular package.
        """
        tree.path("rl_ns").mkdir()
        import rl_ns

        assert rl_ns.__file__ is None
        tree.write({"rl_ns/__init__.py": "KIND = 'regular'\n"})
        tracker.reload(rl_ns)
        assert "regular" == rl_ns.KIND
        assert rl_ns.__file__ == str(tree.path("rl_ns/__init__.py"))
        assert tracker.current(rl_ns).source_sha256 is not None

    def test_namespace_package_reloads(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A namespace package (no code) reloads and records a version without source.
        """
        tree.path("rl_ns2").mkdir()
        import rl_ns2

        assert rl_ns2 is tracker.reload(rl_ns2)
        assert ["import", "reload"] == [v.reason for v in tracker.history(rl_ns2)]
        assert tracker.current(rl_ns2).source_sha256 is None

    def test_module_without_spec_raises_module_not_found(self, tracker: versionload.Tracker) -> None:
        """
        A bare ModuleType put in sys.modules has no spec to find: ModuleNotFoundError.
        """
        bare = types.ModuleType("rl_bare")
        bare.X = 1  # type: ignore[attr-defined]
        sys.modules["rl_bare"] = bare
        with pytest.raises(ModuleNotFoundError):
            importlib.reload(bare)
        with pytest.raises(versionload.SpecNotFoundError) as caught:
            tracker.reload(bare)
        assert isinstance(caught.value, ModuleNotFoundError)
        assert 1 == bare.X  # type: ignore[attr-defined]
        assert sys.modules["rl_bare"] is bare

    def test_untracked_module_is_adopted_first(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Reloading a module imported before the hook records "adopted" and then "reload".
        """
        tracker.uninstall()
        path = tree.module("rl_adopt", "X = 1\n")
        import rl_adopt

        assert "rl_adopt" not in tracker.tracked()
        path.write_text("X = 2\n")
        tracker.reload(rl_adopt)
        history = tracker.history(rl_adopt)
        assert [("adopted", 1), ("reload", 2)] == [(v.reason, v.number) for v in history]
        assert 1 == history[0].bindings["X"]
        assert 2 == history[1].bindings["X"]

    def test_plain_importlib_reload_is_recorded(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        importlib.reload by other code behaves as the stdlib does and records a "reload" version.
        """
        path = tree.module("rl_external", "X = 1\n")
        import rl_external

        path.write_text("X = 22\n")
        assert rl_external is importlib.reload(rl_external)
        assert 22 == rl_external.X
        assert rl_external.__loader__ is rl_external.__spec__.loader
        assert type(rl_external.__loader__).__name__ == "SourceFileLoader"
        history = tracker.history(rl_external)
        assert [("import", 1), ("reload", 2)] == [(v.reason, v.number) for v in history]
        assert 22 == history[1].bindings["X"]
        assert hashlib.sha256(b"X = 22\n").hexdigest() == history[1].source_sha256

    def test_plain_importlib_reload_of_untracked_adopts_it(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        importlib.reload of a module imported before the hook records "adopted" then "reload".
        """
        tracker.uninstall()
        path = tree.module("rl_external2", "X = 1\n")
        import rl_external2

        tracker.install()
        path.write_text("X = 2\n")
        importlib.reload(rl_external2)
        assert [("adopted", 1), ("reload", 2)] == [
            (v.reason, v.number) for v in tracker.history(rl_external2)
        ]

    def test_failed_plain_importlib_reload_records_nothing(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A plain importlib.reload that raises records no version and raises as the stdlib does.
        """
        path = tree.module("rl_external3", "X = 1\n")
        import rl_external3

        path.write_text("X = 2\nraise ValueError('boom')\n")
        with pytest.raises(ValueError, match="boom"):
            importlib.reload(rl_external3)
        assert [1] == [v.number for v in tracker.history(rl_external3)]

    def test_plain_importlib_reload_running_stale_bytecode_claims_no_hash(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        When importlib.reload runs stale bytecode, the version does not claim the hash of the newer source.
        """
        sys.dont_write_bytecode = False
        path = tree.module("rl_stale_external", "VALUE = 'aaa'\n")
        import rl_stale_external

        importlib.reload(rl_stale_external)
        assert (
            hashlib.sha256(b"VALUE = 'aaa'\n").hexdigest() == tracker.current(rl_stale_external).source_sha256
        )
        tree.edit_keeping_stat(path, "VALUE = 'bbb'\n")
        importlib.reload(rl_stale_external)
        assert "aaa" == rl_stale_external.VALUE  # what importlib.reload does is left alone
        assert [1, 2, 3] == [v.number for v in tracker.history(rl_stale_external)]
        assert tracker.current(rl_stale_external).source_sha256 is None

    def test_stale_bytecode_demonstration_with_importlib(self, tree: ModuleTree) -> None:
        """
        Demonstration: importlib.reload runs stale bytecode after an edit keeping size and mtime.
        """
        sys.dont_write_bytecode = False
        path = tree.module("rl_stale_demo", "VALUE = 'aaa'\n")
        import rl_stale_demo

        assert importlib.util.cache_from_source(str(path))
        tree.edit_keeping_stat(path, "VALUE = 'bbb'\n")
        importlib.reload(rl_stale_demo)
        assert "aaa" == rl_stale_demo.VALUE

    def test_reload_runs_current_source_despite_stale_bytecode(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        An edit keeping size and mtime is still executed, and source_sha256 hashes the new bytes.
        """
        path = tree.module("rl_stale", "VALUE = 'aaa'\n")
        import rl_stale

        tree.edit_keeping_stat(path, "VALUE = 'bbb'\n")
        tracker.reload(rl_stale)
        assert "bbb" == rl_stale.VALUE
        assert hashlib.sha256(b"VALUE = 'bbb'\n").hexdigest() == tracker.current(rl_stale).source_sha256
        # The refreshed cache makes a later plain reload run the new code too.
        tree.edit_keeping_stat(path, "VALUE = 'bbb'\n")
        importlib.reload(rl_stale)
        assert "bbb" == rl_stale.VALUE

    def test_recursive_reload_returns_the_module(self, tree: ModuleTree, hook: versionload.Tracker) -> None:
        """
        A module whose code reloads itself gets the module back, without recursing.
        """
        tree.module(
            "rl_recursive",
            """
            import sys
            import versionload

            RUNS = globals().get("RUNS", 0) + 1
            if RUNS > 1:
                INNER = versionload.reload(sys.modules[__name__])
            """,
        )
        import rl_recursive

        assert rl_recursive is versionload.reload(rl_recursive)
        assert 2 == rl_recursive.RUNS
        assert rl_recursive.INNER is rl_recursive
        assert [1, 2] == [v.number for v in versionload.history(rl_recursive)]

    def test_each_reload_records_a_new_version(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Every successful reload records the next number with reason "reload" and the executed hash.
        """
        path = tree.module("rl_numbers", "X = 0\n")
        import rl_numbers

        for value in (1, 2, 3):
            path.write_text(f"X = {value}\n")
            tracker.reload(rl_numbers)
        history = tracker.history(rl_numbers)
        assert [1, 2, 3, 4] == [v.number for v in history]
        assert ["import", "reload", "reload", "reload"] == [v.reason for v in history]
        assert [0, 1, 2, 3] == [v.bindings["X"] for v in history]
        assert hashlib.sha256(b"X = 3\n").hexdigest() == history[-1].source_sha256
        assert str(path) == history[-1].origin

    def test_module_level_function_uses_default_tracker(
        self, tree: ModuleTree, hook: versionload.Tracker
    ) -> None:
        """
        versionload.reload acts on the default tracker.
        """
        path = tree.module("rl_default", "X = 1\n")
        import rl_default

        path.write_text("X = 2\n")
        assert rl_default is versionload.reload(rl_default)
        assert 2 == versionload.current(rl_default).number
        assert versionload.default_tracker() is hook


class TestReloadUnusualModules:
    """
    Tracker.reload of modules whose parent, name or loader is unusual.
    """

    def test_parent_that_is_not_a_package(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A dotted module whose parent is a plain module raises ModuleNotLoadedError naming the parent.
        """
        tree.module("rlu_plain", "X = 1\n")
        import rlu_plain  # noqa: F401

        child = types.ModuleType("rlu_plain.child")
        sys.modules["rlu_plain.child"] = child
        with pytest.raises(versionload.ModuleNotLoadedError) as caught:
            tracker.reload(child)
        assert "rlu_plain" == caught.value.name
        assert "rlu_plain.child" not in tracker.tracked()

    def test_module_without_any_name(self, tracker: versionload.Tracker) -> None:
        """
        A module object with neither __spec__ nor __name__ is a NotAModuleError.
        """
        nameless = types.ModuleType("rlu_nameless")
        del nameless.__name__
        with pytest.raises(versionload.NotAModuleError):
            tracker.reload(nameless)

    def test_legacy_loader_without_exec_module(self, tracker: versionload.Tracker) -> None:
        """
        A module from a loader that only has load_module reloads through it, with the stdlib's ImportWarning.
        """

        class LegacyLoader:
            runs = 0

            def load_module(self, fullname: str) -> types.ModuleType:
                LegacyLoader.runs += 1
                module = sys.modules.get(fullname) or types.ModuleType(fullname)
                module.RUNS = LegacyLoader.runs  # type: ignore[attr-defined]
                module.__loader__ = self
                sys.modules[fullname] = module
                return module

        class LegacyFinder:
            @staticmethod
            def find_spec(fullname: str, path: object = None, target: object = None) -> object:
                if fullname != "rlu_legacy":
                    return None
                return importlib.machinery.ModuleSpec(fullname, LegacyLoader())

        sys.meta_path.append(LegacyFinder)
        with pytest.warns(ImportWarning):
            import rlu_legacy
        with pytest.warns(ImportWarning, match="load_module"):
            assert rlu_legacy is tracker.reload(rlu_legacy)
        assert 2 == rlu_legacy.RUNS
        assert "reload" == tracker.current(rlu_legacy).reason

    def test_unchecked_hash_pyc_is_left_alone(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        With an unchecked hash-based .pyc, reload still runs the source and does not rewrite that cache.
        """
        import py_compile

        sys.dont_write_bytecode = False
        path = tree.module("rlu_hashpyc", "VALUE = 1\n")
        cache = py_compile.compile(
            str(path), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
        )
        import rlu_hashpyc

        cached = Path(cache).read_bytes()
        path.write_text("VALUE = 22\n")
        tracker.reload(rlu_hashpyc)
        assert 22 == rlu_hashpyc.VALUE
        assert cached == Path(cache).read_bytes()
        importlib.reload(rlu_hashpyc)
        assert 1 == rlu_hashpyc.VALUE  # the stdlib trusts an unchecked cache, as documented

    def test_plain_reload_of_stale_bytecode_over_broken_source(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        importlib.reload running a stale .pyc while the source no longer compiles records no hash.
        """
        sys.dont_write_bytecode = False
        path = tree.module("rlu_stale_broken", "VALUE = 'aaa'\n")
        import rlu_stale_broken

        tree.edit_keeping_stat(path, "VALUE = 'aa'(\n")
        importlib.reload(rlu_stale_broken)
        assert "aaa" == rlu_stale_broken.VALUE
        assert tracker.current(rlu_stale_broken).source_sha256 is None
        with pytest.raises(versionload.ReloadError) as caught:
            tracker.reload(rlu_stale_broken)
        assert isinstance(caught.value.__cause__, SyntaxError)


# A compatibility shim: the old name's file puts the new module under the old name.
_SHIM = """
import sys

import rla_new

SHIM_RAN = True
sys.modules[__name__] = rla_new
"""


class _Opaque:
    """
    An object with a long repr, standing where a module should be.
    """

    def __repr__(self) -> str:
        return "<opaque " + "x" * 500 + ">"


class _BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class TestReloadByAlias:
    """
    Tracker.reload and rollback through a second name under which sys.modules holds a module.
    """

    def _load(self, tree: ModuleTree) -> tuple[Path, types.ModuleType]:
        path = tree.module("rla_new", "X = 1\n")
        tree.module("rla_old", _SHIM)
        import rla_old

        assert sys.modules["rla_new"] is rla_old
        return path, rla_old

    def _assert_own_identity(self, module: types.ModuleType, path: Path) -> None:
        assert "rla_new" == module.__name__
        assert "rla_new" == module.__spec__.name
        assert str(path) == module.__file__
        assert "SHIM_RAN" not in vars(module)

    def test_alias_name_reloads_the_module_under_its_own_name(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Reloading by the alias runs the module's own file under the module's own name, renaming nothing.
        """
        path, module = self._load(tree)
        path.write_text("X = 2\n")

        assert module is tracker.reload("rla_old")
        assert 2 == module.X
        self._assert_own_identity(module, path)
        assert [1, 2] == [v.number for v in tracker.history("rla_new")]
        assert ("rla_new",) == tracker.tracked()
        assert sys.modules["rla_old"] is module

    def test_module_object_reloads_under_its_own_name(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Reloading the module object reached through the alias reloads it under its own name.
        """
        path, module = self._load(tree)
        path.write_text("X = 2\n")

        assert module is tracker.reload(sys.modules["rla_old"])
        assert 2 == module.X
        self._assert_own_identity(module, path)

    def test_rollback_and_history_by_alias(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        The alias name reads and rolls back the history of the module it stands for.
        """
        path, module = self._load(tree)
        path.write_text("X = 2\n")
        tracker.reload("rla_new")

        assert tracker.history("rla_new") == tracker.history("rla_old")
        assert 2 == tracker.current("rla_old").number
        assert module is tracker.rollback("rla_old", to=1)
        assert 1 == module.X
        assert 1 == tracker.current("rla_new").number
        self._assert_own_identity(module, path)

    def test_alias_of_a_module_missing_under_its_own_name(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        An alias of a module gone from sys.modules under its own name raises ModuleNotLoadedError.
        """
        path, module = self._load(tree)
        del sys.modules["rla_new"]
        path.write_text("X = 2\n")
        before = dict(vars(module))
        with pytest.raises(versionload.ModuleNotLoadedError) as caught:
            tracker.reload("rla_old")

        assert "rla_new" == caught.value.name
        assert "'rla_old'" in str(caught.value)
        assert before == vars(module)
        self._assert_own_identity(module, path)


class TestReloadNotAModuleEntry:
    """
    Tracker.reload of a name under which sys.modules holds something that is not a module.
    """

    @pytest.mark.parametrize(
        ("entry", "expected"),
        [
            (42, "sys.modules['rln_entry'] is not a module but int: 42"),
            (None, "sys.modules['rln_entry'] is None (imports of 'rln_entry' are blocked), not a module"),
        ],
    )
    def test_error_says_what_is_there(
        self, tracker: versionload.Tracker, entry: object, expected: str
    ) -> None:
        """
        The error names the type and the repr of what sys.modules holds, and stays a ModuleNotLoadedError.
        """
        sys.modules["rln_entry"] = entry  # type: ignore[assignment]
        with pytest.raises(versionload.ModuleNotLoadedError) as caught:
            tracker.reload("rln_entry")

        assert expected == str(caught.value)
        assert "rln_entry" == caught.value.name
        assert sys.modules["rln_entry"] is entry

    def test_long_repr_is_cut(self, tracker: versionload.Tracker) -> None:
        """
        A long repr is cut short in the message.
        """
        sys.modules["rln_long"] = _Opaque()  # type: ignore[assignment]
        with pytest.raises(versionload.ModuleNotLoadedError) as caught:
            tracker.reload_many(["rln_long"])

        message = str(caught.value)
        assert message.startswith("sys.modules['rln_long'] is not a module but _Opaque: <opaque xxx")
        assert message.endswith("...")
        assert len(message) < 200

    def test_failing_repr_is_reported_by_type(self, tracker: versionload.Tracker) -> None:
        """
        An object whose repr raises is still described by its type.
        """
        sys.modules["rln_broken"] = _BrokenRepr()  # type: ignore[assignment]
        with pytest.raises(versionload.ModuleNotLoadedError) as caught:
            tracker.reload("rln_broken")

        expected = (
            "sys.modules['rln_broken'] is not a module but _BrokenRepr: "
            "<_BrokenRepr object with a failing __repr__>"
        )
        assert expected == str(caught.value)


class TestReloadRefusesVersionload:
    """
    versionload never reloads its own modules: their state would be replaced behind the hook.
    """

    @pytest.mark.parametrize("name", ["versionload", "versionload._registry", "versionload._errors"])
    def test_refused_and_unchanged(self, name: str) -> None:
        """reload, cascade, reload_many and plan of a versionload module are refused; nothing changes."""
        tracker = versionload.Tracker()
        module = sys.modules[name]
        before = dict(module.__dict__)
        default = versionload.default_tracker()

        for call in (
            lambda: tracker.reload(name),
            lambda: tracker.reload(name, cascade=True),
            lambda: tracker.reload_many([name]),
            lambda: tracker.plan(name, cascade=True),
            lambda: tracker.plan(name),
        ):
            with pytest.raises(versionload.ReloadRefusedError, match="does not reload its own modules"):
                call()

        assert (before, default) == (dict(module.__dict__), versionload.default_tracker())
        assert [] == list(tracker.changesets())
