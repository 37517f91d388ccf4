"""
The dependency graph between tracked modules: `dependents` and `dependencies`.
"""

from __future__ import annotations

import dis
import importlib
import importlib.util
from inspect import CO_NEWLOCALS
from types import CodeType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import versionload
from versionload import _graph

from .helpers import ModuleTree


def _app(tree: ModuleTree) -> None:
    tree.write(
        {
            "app/__init__.py": "",
            "app/base.py": """
                def f():
                    return 1

                class Base:
                    pass
            """,
            "app/fromimport.py": """
                from app.base import f
            """,
            "app/plainimport.py": """
                import app.base

                def g():
                    return app.base.f()
            """,
            "app/relative.py": """
                from .base import Base
                from . import fromimport
            """,
            "app/lazy.py": """
                def later():
                    from app import base
                    return base.f()
            """,
            "app/alone.py": """
                VALUE = 1
            """,
        }
    )


class TestDependents:
    def test_direct_dependents_come_from_every_kind_of_import(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """From-imports, plain and relative imports make edges; a lazy import in a function does not."""
        _app(tree)
        for name in (
            "app.base",
            "app.fromimport",
            "app.plainimport",
            "app.relative",
            "app.lazy",
            "app.alone",
        ):
            importlib.import_module(name)
        assert ("app.fromimport", "app.plainimport", "app.relative") == tracker.dependents("app.base")

    def test_imports_that_run_at_import_make_edges(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Imports in if/try blocks and in (nested) class bodies at module level are edges."""
        tree.write(
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "VALUE = 1",
                "pkg/b.py": "VALUE = 2",
                "pkg/c.py": "VALUE = 3",
                "pkg/d.py": "VALUE = 4",
                "pkg/user.py": """
                    import sys
                    if sys.version_info > (3,):
                        import pkg.a
                    try:
                        from pkg import b
                    except ImportError:
                        b = None

                    class Outer:
                        import pkg.c

                        class Inner:
                            from pkg.d import VALUE
                """,
            }
        )
        importlib.import_module("pkg.user")

        # ``import pkg.a`` binds ``pkg`` itself too.
        assert {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d"} == set(tracker.dependencies("pkg.user"))

    def test_imports_inside_functions_make_no_edge(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """An import in a function, method, nested function, lambda or generator is no edge."""
        tree.write(
            {
                "numpyish/__init__.py": "",
                "numpyish/config.py": """
                    def load(text):
                        import yamlish
                        return yamlish.parse(text)

                    class Reader:
                        def read(self):
                            from yamlish import parse

                            def inner():
                                import yamlish.extra
                            return parse

                    lazy = lambda: __import__("yamlish")

                    def items():
                        import yamlish
                        yield yamlish
                """,
                "yamlish/__init__.py": """
                    def parse(text):
                        return text
                """,
                "yamlish/extra.py": "",
            }
        )
        importlib.import_module("yamlish.extra")
        config = importlib.import_module("numpyish.config")
        config.load("x")  # the lazy import has run: yamlish is bound nowhere in the namespace

        assert () == tracker.dependents("yamlish")
        assert () == tracker.dependencies("numpyish.config")

    def test_import_served_from_sys_modules_still_counts(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A module imported after its dependency (no finder asked) is still a dependent."""
        _app(tree)
        base = importlib.import_module("app.base")
        importlib.import_module("app.fromimport")
        assert "app.fromimport" in tracker.dependents(base)

    def test_transitive_dependents_follow_paths(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """With transitive=True, dependents of dependents are included."""
        _app(tree)
        importlib.import_module("app.relative")
        assert ("app.relative",) == tracker.dependents("app.fromimport")
        assert {"app.fromimport", "app.relative"} <= set(tracker.dependents("app.base", transitive=True))

    def test_binding_seen_only_in_the_namespace_counts(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A function taken through importlib.import_module (no import statement) makes an edge."""
        _app(tree)
        tree.module(
            "app.dynamic",
            """
            import importlib
            handler = importlib.import_module("app" + ".base").f
            """,
        )
        importlib.import_module("app.dynamic")
        assert ("app.base",) == tracker.dependencies("app.dynamic")

    def test_package_does_not_depend_on_its_submodules(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """The submodules the import system binds in a package are not dependencies of it."""
        _app(tree)
        importlib.import_module("app.alone")
        assert () == tracker.dependencies("app")

    def test_untracked_module_is_refused(self, tracker: versionload.Tracker) -> None:
        """Asking about a module without history raises NotTrackedError."""
        with pytest.raises(versionload.NotTrackedError):
            tracker.dependents("json")

    def test_not_a_module_is_refused(self, tracker: versionload.Tracker) -> None:
        """A non-module argument raises NotAModuleError."""
        with pytest.raises(versionload.NotAModuleError):
            tracker.dependents(42)  # type: ignore[arg-type]


class TestDependencies:
    def test_direct_dependencies(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A from-import of a submodule depends on the submodule, not just on its package."""
        _app(tree)
        importlib.import_module("app.relative")
        assert ("app.base", "app.fromimport") == tracker.dependencies("app.relative")

    def test_transitive_dependencies(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """With transitive=True, the dependencies of dependencies are included."""
        _app(tree)
        importlib.import_module("app.relative")
        assert {"app.base", "app.fromimport"} == set(tracker.dependencies("app.relative", transitive=True))

    def test_facade_uses_the_default_tracker(self, hook: versionload.Tracker, tree: ModuleTree) -> None:
        """versionload.dependencies and dependents answer for the default tracker."""
        _app(tree)
        importlib.import_module("app.fromimport")
        assert ("app.base",) == versionload.dependencies("app.fromimport")
        assert ("app.fromimport",) == versionload.dependents("app.base")


class TestCascadeOrder:
    @settings(max_examples=100, deadline=None)
    @given(
        st.integers(2, 9).flatmap(
            lambda n: st.tuples(
                st.just(n),
                st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
                st.integers(0, n - 1),
            )
        )
    )
    def test_order_respects_dependencies_outside_cycles(
        self, case: tuple[int, list[tuple[int, int]], int]
    ) -> None:
        """The trigger and its dependents once each, trigger first, dependencies before dependents."""
        count, pairs, trigger_index = case
        names = [f"m{i}" for i in range(count)]
        edges = {
            name: tuple(sorted({names[b] for a, b in pairs if names[a] == name and a != b})) for name in names
        }
        trigger = names[trigger_index]
        order = _graph.cascade_order(edges, trigger)

        def reaches(start: str, goal: str) -> bool:
            seen, stack = set(), [start]
            while stack:
                for target in edges[stack.pop()]:
                    if target == goal:
                        return True
                    if target not in seen:
                        seen.add(target)
                        stack.append(target)
            return False

        expected = {trigger} | {name for name in names if reaches(name, trigger)}
        assert sorted(expected) == sorted(order)
        assert len(set(order)) == len(order)
        assert trigger == order[0]
        position = {name: index for index, name in enumerate(order)}
        for name in order:
            for dependency in edges[name]:
                in_one_cycle = reaches(dependency, name)
                if dependency in position and not in_one_cycle:
                    assert position[dependency] < position[name]


def _imports_by_dis(code: CodeType, package: str | None) -> set[tuple[str, ...]]:
    """
    The same scan as versionload's, written plainly on top of ``dis``, as a reference.
    """
    names: set[tuple[str, ...]] = set()
    stack = [code]
    while stack:
        each = stack.pop()
        # Class bodies, not functions: only the code that runs at import.
        stack.extend(c for c in each.co_consts if isinstance(c, CodeType) and not c.co_flags & CO_NEWLOCALS)
        constants: list[object] = []
        base: str | None = None
        for instruction in dis.get_instructions(each):
            if instruction.opname in ("LOAD_CONST", "LOAD_SMALL_INT"):
                constants.append(instruction.argval)
                continue
            if instruction.opname == "IMPORT_NAME":
                level = constants[-2] if len(constants) >= 2 else 0
                fromlist = constants[-1] if constants else None
                name = "." * (level if isinstance(level, int) else 0) + instruction.argval
                base = importlib.util.resolve_name(name, package) if package or not level else None
                if base is not None:
                    items = tuple(fromlist) if isinstance(fromlist, tuple) else ()
                    if not items or "*" in items:
                        names.add((base,))
                    names.update((f"{base}.{item}", base) for item in items if item != "*")
            elif instruction.opname == "IMPORT_FROM" and base is not None:
                names.add((f"{base}.{instruction.argval}", base))
            constants = []
    return names


class TestImportScan:
    @pytest.mark.parametrize(
        "name",
        ["asyncio.base_events", "email.message", "http.server", "json.decoder", "logging.handlers", "typing"],
    )
    def test_matches_dis_on_stdlib_modules(self, name: str) -> None:
        """The fast bytecode scan finds exactly what a dis-based scan finds."""
        module = importlib.import_module(name)
        code = module.__spec__.loader.get_code(name)
        assert _imports_by_dis(code, module.__package__) == set(
            _graph.imported_names(code, module.__package__)
        )

    def test_extended_arguments(self) -> None:
        """Imports whose name or constant index needs EXTENDED_ARG (over 255 names) are found."""
        filler = "\n".join(f"name_{i} = {i}.5" for i in range(300))
        code = compile(f"{filler}\nfrom .sibling import thing\nimport far.away\n", "<test>", "exec")
        assert {("pkg.sibling.thing", "pkg.sibling"), ("far.away",)} == set(
            _graph.imported_names(code, "pkg")
        )
