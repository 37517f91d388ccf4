"""
The public facade: its names, where they say they live, and what importing it costs.
"""

from __future__ import annotations
import __future__

import importlib.metadata
import json
import pickle
import subprocess
import sys
import textwrap
import types
import typing

import attrs
import pytest

import versionload

# Functions IPython looks up by name for ``%load_ext versionload``: a protocol, not API
# for ``from versionload import *``.
_PROTOCOL_HOOKS = {"load_ipython_extension", "unload_ipython_extension"}


def _public_names() -> set[str]:
    # Submodules and the compiler flag of ``from __future__ import annotations`` are not API.
    return {
        name
        for name, value in vars(versionload).items()
        if not name.startswith("_")
        and name not in _PROTOCOL_HOOKS
        and not isinstance(value, (types.ModuleType, __future__._Feature))
    }


class TestNames:
    """
    ``versionload.__all__`` and the objects it names.
    """

    def test_all_equals_public_names_sorted(self) -> None:
        """
        __all__ lists exactly the public names of the facade, sorted.
        """
        assert sorted(versionload.__all__) == versionload.__all__
        assert _public_names() == set(versionload.__all__)

    def test_public_objects_live_in_versionload(self) -> None:
        """
        Every public class and function says its __module__ is "versionload", not a private module.
        """
        wrong = {
            name: getattr(versionload, name).__module__
            for name in versionload.__all__
            if hasattr(getattr(versionload, name), "__module__")
            and getattr(versionload, name).__module__ != "versionload"
        }
        assert {} == wrong

    def test_annotations_resolve(self) -> None:
        """
        The facade functions' annotations resolve at run time (for documentation and checkers).
        """
        for name in ("install", "track", "reload", "rollback", "history", "current", "diff"):
            hints = typing.get_type_hints(getattr(versionload, name))
            assert "return" in hints

    def test_version_attribute(self) -> None:
        """
        __version__ is the installed distribution's version.
        """
        assert importlib.metadata.version("versionload") == versionload.__version__

    def test_unknown_attribute(self) -> None:
        """
        An unknown attribute raises AttributeError naming it.
        """
        with pytest.raises(AttributeError, match="no_such_thing"):
            versionload.no_such_thing  # noqa: B018

    def test_default_tracker(self) -> None:
        """
        default_tracker() always returns the same Tracker, which install() returns too.
        """
        tracker = versionload.default_tracker()
        assert isinstance(tracker, versionload.Tracker)
        assert tracker is versionload.default_tracker()
        assert tracker is versionload.install()
        assert "installed" in repr(tracker)


class TestModuleLevelFunctions:
    """
    The module-level functions act on the default tracker.
    """

    def test_track_history_current(self) -> None:
        """
        versionload.track adopts a module; history and current read the default tracker.
        """
        import json

        version = versionload.track(json)
        assert ("json", 1, "adopted") == (version.module, version.number, version.reason)
        assert (version,) == versionload.history("json")
        assert version is versionload.current(json)
        assert ("json",) == versionload.default_tracker().tracked()


class TestErrors:
    """
    The error hierarchy: one root, and the standard base each caller expects.
    """

    @pytest.mark.parametrize(
        ("error", "bases"),
        [
            (versionload.InvalidArgumentError, (TypeError, ValueError)),
            (versionload.NotAModuleError, (versionload.InvalidArgumentError, TypeError)),
            (versionload.NotTrackedError, (LookupError,)),
            (versionload.VersionNotFoundError, (LookupError,)),
            (versionload.ReloadError, (ImportError,)),
            (versionload.ModuleNotLoadedError, (versionload.ReloadError, ImportError)),
            (versionload.SpecNotFoundError, (versionload.ReloadError, ModuleNotFoundError)),
            (versionload.DrainTimeoutError, (versionload.ReloadError, ImportError)),
            (versionload.ServingSectionError, (RuntimeError,)),
        ],
    )
    def test_bases(self, error: type[Exception], bases: tuple[type[Exception], ...]) -> None:
        """
        Each error derives from VersionLoadError and from the standard exceptions listed.
        """
        assert issubclass(error, versionload.VersionLoadError)
        assert all(issubclass(error, base) for base in bases)

    def test_reload_error_pickles(self) -> None:
        """
        A ReloadError survives pickling with its message, module name and path.
        """
        error = versionload.SpecNotFoundError("gone", module="m", path="/x/m.py")
        copy = pickle.loads(pickle.dumps(error))
        assert versionload.SpecNotFoundError is type(copy)
        assert ("gone", "m", "m", "/x/m.py") == (str(copy), copy.module, copy.name, copy.path)


class TestRecords:
    """
    ModuleVersion and NamespaceDiff are frozen attrs records.
    """

    @pytest.mark.parametrize("cls", [versionload.ModuleVersion, versionload.NamespaceDiff])
    def test_frozen_attrs(self, cls: type) -> None:
        """
        The record classes are attrs classes whose instances cannot be changed.
        """
        assert attrs.has(cls)
        diff = versionload.NamespaceDiff(
            module="m", from_version=1, to_version=2, added=(), removed=(), changed=()
        )
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            diff.added = ("x",)  # type: ignore[misc]


_PROBE = """
import json, sys
meta_path = [id(f) for f in sys.meta_path]
path_hooks = [id(h) for h in sys.path_hooks]
before = set(sys.modules)
import versionload
print(json.dumps({
    "meta_path_unchanged": meta_path == [id(f) for f in sys.meta_path],
    "path_hooks_unchanged": path_hooks == [id(h) for h in sys.path_hooks],
    "new_modules": sorted(set(sys.modules) - before),
}))
"""


class TestImportCost:
    """
    What ``import versionload`` does to a fresh interpreter.
    """

    def test_import_changes_nothing_and_pulls_in_little(self) -> None:
        """
        Importing the package leaves meta_path and path_hooks alone and imports no watcher or IPython.
        """
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_PROBE)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        report = json.loads(result.stdout)
        assert report["meta_path_unchanged"]
        assert report["path_hooks_unchanged"]
        tops = {name.partition(".")[0] for name in report["new_modules"]}
        unwanted = {"watchfiles", "IPython", "pytest", "hypothesis", "pluggy", "_pytest", "redis"}
        assert set() == tops & unwanted
        assert "versionload.testing" not in report["new_modules"]
        assert "versionload.gate" not in report["new_modules"]
        assert "versionload.fleet" not in report["new_modules"]
        assert "" == result.stderr
