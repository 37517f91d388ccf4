"""
The package's layers, read from the source: who may import whom, and who may touch
whose private attributes.

versionload is a core pipeline with two wings on top of it (``_live``: watch,
control socket, CLI, IPython; ``_plugins``: the plugin host) and a facade over all
(``__init__``, ``plugins``, ``testing``, ``__main__``). The wings reach the core only
through its door, ``_tracker``, and the bottom modules that hold plain data, errors
and argument checks; the core never knows the wings; nothing imports the facade back.

Each rule is checked on every module of the package, imports inside functions
included, and on a small bad example, so that a rule that can no longer fail is
noticed too.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import versionload

PACKAGE = Path(versionload.__file__).parent
ROOT = "versionload"
#: Plain data, errors, argument checks and fork safety: anybody may import these.
BOTTOM = frozenset(
    f"{ROOT}.{name}" for name in ("_errors", "_snapshot", "_history", "_events", "_arguments", "_fork")
)
#: The one door to the core for the wings.
DOOR = f"{ROOT}._tracker"
WINGS = (f"{ROOT}._live", f"{ROOT}._plugins", f"{ROOT}._fleet")
#: Imports from one wing into another, each with its reason: the command line is the
#: one place where the wings meet (``versionload fleet ...``, ``run --fleet``).
CROSSINGS = frozenset({(f"{ROOT}._live.cli", f"{ROOT}._fleet.cli")})
#: The public modules; they may import anything private, but nothing imports them.
FACADE = frozenset(f"{ROOT}.{name}" for name in ("plugins", "testing", "gate", "fleet", "__main__")) | {ROOT}
#: Private attributes of objects that are not ours, used on purpose: the CPython
#: internals the import hook cooperates with and a few stdlib names that merely start
#: with an underscore, each named (see docs/architecture.md).
CPYTHON_PRIVATE = frozenset(
    {
        "_bootstrap._ModuleLockManager",  # the import system's own module lock, taken by reloads
        "_bootstrap._find_spec",  # its code object: how the finder knows a real import asks
        "_bootstrap._find_and_load_unlocked",  # the same
        "_bootstrap._exec",  # the same, for importlib.reload
        "_bootstrap._module_locks",  # a first import's module lock: collected when the import ended
        "_bootstrap._ModuleLock",  # its class, to know the lock is the one this code knows
        "structlog._config",  # its configuration module, for the next line
        "structlog._config._CONFIG",  # what is_configured() reads, read on every import without a call
        "_bootstrap._init_module_attrs",  # a reload sets __spec__ and friends as importlib does
        "_imp._fix_co_filename",  # code run from a .pyc names the source file, as the loader does
        "sys._getframe",  # the finder's caller, and the end of a load, read from the stack
        "sys._current_frames",  # stale(): frames of running threads executing old code
        "asyncio._get_running_loop",  # the gate: is this thread running a loop, without raising
        "lock._is_owned",  # RLock: does this thread hold the registry lock, asked without blocking
    }
)


@attrs.frozen
class Import:
    """
    One imported module: who imports it, and on which line.
    """

    importer: str
    target: str
    line: int


def module_name(path: Path, package: Path = PACKAGE, root: str = ROOT) -> str:
    parts = list(path.relative_to(package).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([root, *parts])


def _is_package(name: str, modules: frozenset[str]) -> bool:
    return any(other.startswith(name + ".") for other in modules)


def imports_of(name: str, source: str, modules: frozenset[str]) -> Iterator[Import]:
    """
    Every module of the package that ``source`` (the module ``name``) imports, at any depth.

    ``from . import x`` counts as importing the submodule ``x`` when there is one, and
    as importing the package itself (for the name ``x`` it defines) otherwise.
    """
    is_package = _is_package(name, modules) or name == ROOT
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                    yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[: len(base_parts) - (node.level - 1)])
                source_module = f"{base}.{node.module}" if node.module else base
            else:
                source_module = node.module or ""
            if not (source_module == ROOT or source_module.startswith(ROOT + ".")):
                continue
            for alias in node.names:
                candidate = f"{source_module}.{alias.name}"
                target = candidate if candidate in modules else source_module
                yield Import(name, target, node.lineno)


def private_reaches(source: str, allowed: frozenset[str] = CPYTHON_PRIVATE) -> Iterator[tuple[int, str]]:
    """
    ``x._y`` where ``_y`` is not a dunder and ``x`` is neither ``self`` / ``cls`` nor a
    class the module itself defines, unless ``x._y`` is a named CPython internal: code
    touching another object's private state.
    """
    tree = ast.parse(source)
    own_classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"} | own_classes:
            continue
        expression = ast.unparse(node)
        if expression in allowed:
            continue
        yield node.lineno, expression


def layer(name: str) -> str:
    if name in FACADE:
        return "facade"
    for wing in WINGS:
        if name == wing or name.startswith(wing + "."):
            return wing
    return "core"


def violations(sources: dict[str, str]) -> list[str]:
    """
    Every broken layer rule in ``sources`` (module name -> source), as readable lines.
    """
    modules = frozenset(sources)
    found: list[str] = []
    for name, source in sorted(sources.items()):
        own = layer(name)
        for each in imports_of(name, source, modules):
            target = layer(each.target)
            where = f"{name}:{each.line} imports {each.target}"
            if each.target == ROOT and name != ROOT:
                found.append(f"{where}: nothing imports the facade")
            elif own == "core" and target != "core":
                found.append(f"{where}: the core never imports a wing or the facade")
            elif name in BOTTOM and each.target not in BOTTOM:
                found.append(f"{where}: a bottom module imports only bottom modules")
            elif own in WINGS and target == "core" and each.target not in BOTTOM | {DOOR}:
                found.append(f"{where}: a wing reaches the core only through {DOOR} and the bottom modules")
            elif own in WINGS and target in WINGS and target != own and (name, each.target) not in CROSSINGS:
                found.append(f"{where}: a wing does not import the other wing")
            elif own in WINGS and target == "facade":
                found.append(f"{where}: a wing does not import the facade")
        for line, expression in private_reaches(source):
            found.append(f"{name}:{line} {expression}: reaches into another object's private state")
    return found


def package_sources() -> dict[str, str]:
    return {module_name(path): path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}


class TestThePackage:
    """
    The rules, on versionload's own modules.
    """

    def test_every_module_is_read(self) -> None:
        """
        The rules see the core, both wings and the facade.
        """
        names = set(package_sources())

        assert {ROOT, DOOR, f"{ROOT}._live.watch", f"{ROOT}._plugins.host", f"{ROOT}.testing"} <= names
        assert BOTTOM <= names

    def test_no_rule_is_broken(self) -> None:
        """
        No upward import, no wing past the door, no facade imported back, no private reach-in.
        """
        assert [] == violations(package_sources())

    def test_every_allowed_internal_is_used(self) -> None:
        """
        The allowlist of CPython internals names nothing the package no longer uses.
        """
        used = set()
        for source in package_sources().values():
            used.update(expression for _, expression in private_reaches(source, frozenset()))

        assert set() == CPYTHON_PRIVATE - used

    def test_layout(self) -> None:
        """
        The package folder holds the core modules, the facade and the two wings' folders.
        """
        folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")

        assert ["_fleet", "_live", "_plugins"] == folders

    def test_every_error_class_lives_in_an_errors_module(self) -> None:
        """
        Exception classes are defined in _errors.py, or (a wing's own) in its errors.py.
        """
        homes = {}
        for name, source in package_sources().items():
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.ClassDef) and (
                    node.name.endswith("Error") or node.name.endswith("Exception")
                ):
                    homes[node.name] = name

        assert {f"{ROOT}._errors", f"{ROOT}._plugins.errors", f"{ROOT}._fleet.errors"} == set(homes.values())


def _bad(sources: dict[str, str]) -> list[str]:
    """
    The violations of a made-up package: the given modules, plus an empty facade, door
    and bottom module.
    """
    made_up = {ROOT: "", DOOR: "", f"{ROOT}._errors": ""}
    made_up.update({name: textwrap.dedent(source) for name, source in sources.items()})
    return violations(made_up)


class TestEachRuleCanFail:
    """
    Each rule, on a small module that breaks it (so a rule that no longer bites shows up).
    """

    def test_wing_past_the_door(self) -> None:
        """
        A wing importing a core module other than the door and the bottom is reported.
        """
        found = _bad(
            {
                "versionload._live.watch": "from .._engine import reload\nfrom .._tracker import Tracker\n",
                "versionload._engine": "",
            }
        )

        assert 1 == len(found)
        assert found[0].startswith("versionload._live.watch:1 imports versionload._engine: a wing reaches")

    def test_import_inside_a_function_counts(self) -> None:
        """
        An import inside a function is read like one at the top.
        """
        found = _bad(
            {
                "versionload._plugins.host": "def load():\n    from .._group import reload_group\n",
                "versionload._group": "",
            }
        )

        assert 1 == len(found)
        assert "versionload._plugins.host:2 imports versionload._group" in found[0]

    def test_core_importing_a_wing(self) -> None:
        """
        A core module importing a wing module is reported.
        """
        found = _bad(
            {"versionload._engine": "from ._live.watch import Watcher\n", "versionload._live.watch": ""}
        )

        assert 1 == len(found)
        assert "the core never imports a wing" in found[0]

    def test_importing_the_facade(self) -> None:
        """
        ``import versionload`` and ``from .. import name`` (a facade name) are reported.
        """
        found = _bad(
            {
                "versionload._live.cli": "import versionload\n",
                "versionload._plugins.host": "from .. import default_tracker\n",
            }
        )

        assert 2 == len(found)
        assert all("nothing imports the facade" in each for each in found)

    def test_submodule_of_the_package_is_not_the_facade(self) -> None:
        """
        ``from .. import _arguments`` imports that bottom module, not the facade.
        """
        found = _bad(
            {"versionload._live.watch": "from .. import _arguments as check\n", "versionload._arguments": ""}
        )

        assert [] == found

    def test_bottom_importing_the_core(self) -> None:
        """
        A bottom module importing anything but bottom modules is reported.
        """
        found = _bad(
            {"versionload._errors": "from ._registry import Registry\n", "versionload._registry": ""}
        )

        assert 1 == len(found)
        assert "a bottom module imports only bottom modules" in found[0]

    def test_wing_importing_the_other_wing(self) -> None:
        """
        One wing importing the other is reported.
        """
        found = _bad(
            {
                "versionload._live.watch": "from .._plugins.host import PluginHost\n",
                "versionload._plugins.host": "",
            }
        )

        assert 1 == len(found)
        assert "the other wing" in found[0]

    @pytest.mark.parametrize(
        ("code", "reported"),
        [
            ("tracker._registry.find(name)\n", True),
            ("self._registry._histories.clear()\n", True),
            ("self._registry.find(name)\n", False),
            ("cls._instances.clear()\n", False),
            ("module.__dict__.get('x')\n", False),
            ("code = _bootstrap._find_spec.__code__\n", False),
            ("_bootstrap._load_unlocked(spec)\n", True),
            ("class Finder:\n    def _find(self): ...\n\nCODE = Finder._find.__code__\n", False),
            ("CODE = OtherFinder._find.__code__\n", True),
        ],
    )
    def test_private_reach_in(self, code: str, reported: bool) -> None:
        """
        ``x._y`` is reported unless ``x`` is self or cls, ``_y`` a dunder, or a named CPython internal.
        """
        found = _bad({"versionload._live.control": code})

        assert reported == bool(found)
