"""
Which tracked modules depend on which, and the order a cascade reloads them in.

The import hook alone cannot build this graph: it sees only a module's *first*
import, and every later ``import b`` is served from ``sys.modules`` without asking
any finder. So edges are derived, when asked for, from two things that see every
import a module makes:

* its compiled code: every ``IMPORT_NAME`` (with the level and ``fromlist`` that
  precede it) and ``IMPORT_FROM`` instruction in the code that runs when the module
  is imported: the module body (``if`` and ``try`` blocks included) and, recursively,
  the class bodies in it, resolved against the module's ``__package__``. An import
  inside a function, method or lambda runs only when that is called, so it is not
  an edge: a module that imports ``yaml`` lazily in one helper does not depend on
  ``yaml``, and reloading ``yaml`` does not reach it. The code
  comes from the loader's ``get_code`` (a module keeps no reference to the code it
  ran), read the first time the graph is needed while a version is current and
  cached for that version; versionload's reloads refresh the bytecode cache, so that
  is the code the version ran unless the file was edited since.
* its namespace: modules bound in it (except a package's own submodules, which
  the import system binds there), and classes and functions whose
  ``__module__`` is another tracked module (names taken with ``from b import f``,
  or bound by code the compiler cannot see, such as ``importlib.import_module``).

``import a.b.c`` and ``from a.b import c`` count as a dependency on ``a.b.c`` when
that is a module, otherwise on ``a.b``. For `dependents` and `dependencies` only
tracked modules are nodes; an edge to oneself is dropped.

A cascade (`cascade_plan`) looks further: its nodes are the trigger and every module
in ``sys.modules`` within the cascade's reach (`Reach`), tracked or not, so modules
imported before ``install()`` are seen; only those modules' code is read.
"""

from __future__ import annotations

import dis
import importlib.util
import inspect
import site
import sys
import sysconfig
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from types import CodeType, FunctionType, ModuleType

import attrs

from ._arguments import is_under, name_matches, resolve
from ._fork import renew_after_fork
from ._registry import Registry

_IMPORT_NAME = dis.opmap["IMPORT_NAME"]
_IMPORT_FROM = dis.opmap["IMPORT_FROM"]
_LOAD_CONST = dis.opmap["LOAD_CONST"]
_LOAD_SMALL_INT = dis.opmap.get("LOAD_SMALL_INT", -1)  # Python 3.14+
_EXTENDED_ARG = dis.EXTENDED_ARG
_CACHE = dis.opmap.get("CACHE", -1)  # inline cache units, Python 3.11+

# The imports found in each module's code, per module object and version number.
_Imports = frozenset[tuple[str, ...]]
_found: weakref.WeakKeyDictionary[ModuleType, dict[int, _Imports]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
renew_after_fork(sys.modules[__name__], "_lock", threading.Lock)
_KEEP_VERSIONS = 16


def imported_names(code: CodeType, package: str | None) -> frozenset[tuple[str, ...]]:
    """
    What ``code`` (and the class bodies nested in it) imports, as absolute module names.

    Each entry is a tuple of alternatives, best first: ``import a.b`` gives
    ``("a.b",)``; ``from a import b`` gives ``("a.b", "a")``, meaning the module
    ``a.b`` if there is one, else the names taken from ``a``.
    """
    names: set[tuple[str, ...]] = set()
    for each in _walk(code):
        # Bytecode is made of two-byte units, the opcode first: a cheap test that skips
        # the many code objects that import nothing.
        if _IMPORT_NAME not in each.co_code[::2]:
            continue
        constants: list[object] = []
        base: str | None = None
        for op, arg in _instructions(each.co_code):
            if op == _LOAD_CONST:
                constants.append(each.co_consts[arg])
                continue
            if op == _LOAD_SMALL_INT:
                constants.append(arg)
                continue
            if op == _IMPORT_NAME:
                # ``level`` and ``fromlist`` are the two constants loaded just before.
                level: object = constants[-2] if len(constants) >= 2 else 0
                fromlist: object = constants[-1] if constants else None
                base = _absolute(each.co_names[arg], level if isinstance(level, int) else 0, package)
                if base is not None:
                    items = tuple(fromlist) if isinstance(fromlist, tuple) else ()
                    if not items or "*" in items:
                        names.add((base,))
                    names.update((_join(base, str(item)), base) for item in items if item != "*")
            elif op == _IMPORT_FROM and base is not None:
                names.add((_join(base, each.co_names[arg]), base))
            constants = []
    return frozenset(names)


def _instructions(raw: bytes) -> Iterator[tuple[int, int]]:
    """
    ``(opcode, argument)`` of each instruction, without inline caches (what ``dis``
    yields, at a fraction of its cost).
    """
    extended = 0
    for index in range(0, len(raw), 2):
        op, arg = raw[index], raw[index + 1] | extended
        if op == _EXTENDED_ARG:
            extended = arg << 8
            continue
        extended = 0
        if op != _CACHE:
            yield op, arg


def _join(base: str, item: str) -> str:
    return f"{base}.{item}" if base else item


def _walk(code: CodeType) -> Iterator[CodeType]:
    """
    ``code`` and the code objects nested in it that run when it runs: class bodies
    (and theirs), never functions, methods, lambdas or generators.
    """
    stack = [code]
    while stack:
        each = stack.pop()
        yield each
        stack.extend(
            const
            for const in each.co_consts
            # A function's code gets fresh locals (CO_NEWLOCALS); a class body's, like
            # a module's, runs in a namespace dict given to it, at once.
            if isinstance(const, CodeType) and not const.co_flags & inspect.CO_NEWLOCALS
        )


def _absolute(name: str, level: int, package: str | None) -> str | None:
    if level == 0:
        return name
    if not package:
        return None
    try:
        return importlib.util.resolve_name("." * level + name, package)
    except (ImportError, ValueError):
        return None


def _code_imports(name: str, module: ModuleType, version: int) -> _Imports:
    with _lock:
        known = _found.get(module, {}).get(version)
    if known is not None:
        return known
    # Read the module's dict, never getattr: a module __getattr__ must not run here.
    package = module.__dict__.get("__package__")
    names: _Imports = frozenset()
    loader = getattr(module.__dict__.get("__spec__"), "loader", None)
    get_code = getattr(loader, "get_code", None)
    if get_code is not None:
        try:
            code = get_code(name)
        except Exception:  # noqa: BLE001 - no code (deleted file, syntax error now): namespace edges only
            code = None
        if isinstance(code, CodeType):
            names = imported_names(code, package if isinstance(package, str) else None)
    with _lock:
        known_versions = _found.setdefault(module, {})
        known_versions[version] = names
        while len(known_versions) > _KEEP_VERSIONS:
            del known_versions[min(known_versions)]
    return names


def _namespace_imports(name: str, namespace: Mapping[str, object]) -> set[str]:
    names: set[str] = set()
    for key, value in list(namespace.items()):
        if isinstance(value, ModuleType):
            attributes = value.__dict__
            spec = attributes.get("__spec__")
            found = getattr(spec, "name", None) if spec is not None else attributes.get("__name__")
            # The import system binds each submodule in its package: that is not a
            # dependency of the package (its code may never mention it).
            if isinstance(found, str) and found != f"{name}.{key}":
                names.add(found)
        elif isinstance(value, (type, FunctionType)):
            # Only classes and functions: asking arbitrary objects for __module__ could
            # run their __getattr__.
            owner = getattr(value, "__module__", None)
            if isinstance(owner, str):
                names.add(owner)
    return names


def dependency_map(registry: Registry) -> dict[str, tuple[str, ...]]:
    """
    For each tracked module (in tracking order), the tracked modules it depends on.
    """
    tracked: dict[str, ModuleType] = {}
    versions: dict[str, int] = {}
    for name in registry.names():
        found = registry.find(name)
        if found is not None and sys.modules.get(name) is found[0]:
            tracked[name] = found[0]
            versions[name] = found[1].current_number
    edges: dict[str, tuple[str, ...]] = {}
    for name, module in tracked.items():
        candidates = set(_code_imports(name, module, versions[name]))
        candidates.update((each,) for each in _namespace_imports(name, module.__dict__))
        resolved = {next((n for n in alternatives if n in tracked), None) for alternatives in candidates}
        edges[name] = tuple(sorted(n for n in resolved if n is not None and n != name))
    return edges


def dependents_of(edges: Mapping[str, tuple[str, ...]], name: str, transitive: bool) -> tuple[str, ...]:
    """
    The modules with an edge to ``name`` (or a path to it), in tracking order.
    """
    reverse = _reverse(edges)
    found = _reach(reverse, name) if transitive else set(reverse.get(name, ()))
    found.discard(name)
    return tuple(n for n in edges if n in found)


def dependencies_of(edges: Mapping[str, tuple[str, ...]], name: str, transitive: bool) -> tuple[str, ...]:
    """
    The modules ``name`` has an edge (or a path) to, in tracking order.
    """
    found = _reach(edges, name) if transitive else set(edges.get(name, ()))
    found.discard(name)
    return tuple(n for n in edges if n in found)


def _reverse(edges: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    reverse: dict[str, list[str]] = {name: [] for name in edges}
    for name, targets in edges.items():
        for target in targets:
            reverse.setdefault(target, []).append(name)
    return reverse


def _reach(adjacency: Mapping[str, Iterable[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in adjacency.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def cascade_order(edges: Mapping[str, tuple[str, ...]], trigger: str) -> tuple[str, ...]:
    """
    ``trigger`` and every module that depends on it, each after its dependencies.

    The order is `topological_order` over those modules, ranked by tracking order
    with the trigger ahead of all: in an import cycle it comes first, and its block
    is the first one due.
    """
    members = _reach(_reverse(edges), trigger) | {trigger}
    rank = {name: index for index, name in enumerate(edges)}
    rank[trigger] = -1
    return topological_order(
        {name: [t for t in edges.get(name, ()) if t in members] for name in members}, rank
    )


def topological_order(edges: Mapping[str, Iterable[str]], rank: Mapping[str, int]) -> tuple[str, ...]:
    """
    Every node of ``edges`` after the nodes it has an edge to (module -> what it
    depends on); targets that are not nodes, and edges to oneself, are ignored.

    The one order of versionload: cascades and plugin units both use it. Nodes in a
    cycle (a strongly connected component) cannot all come after one another: the
    component is one block, in rank order, placed at the point its first node is due.
    Between blocks the order is topological, ties broken by rank (then by name; a
    node without a rank comes after those with one), so the result is deterministic.
    For modules the rank is the tracking order: the order they finished their first
    import, which is an order their code is known to run in.
    """
    nodes = sorted(edges, key=lambda name: (rank.get(name, len(rank)), name))
    position = {name: index for index, name in enumerate(nodes)}
    sub = {
        name: sorted({t for t in edges[name] if t in position and t != name}, key=position.__getitem__)
        for name in nodes
    }
    components = _components(sub, nodes)
    component_of = {name: index for index, names in enumerate(components) for name in names}
    # Kahn's algorithm over the components: a component is due once every component
    # it depends on is done.
    waiting = {
        index: {component_of[t] for n in names for t in sub[n]} - {index}
        for index, names in enumerate(components)
    }
    order: list[str] = []
    done: set[int] = set()
    while len(done) < len(components):
        ready = [i for i, needs in waiting.items() if i not in done and needs <= done]
        chosen = min(ready, key=lambda i: min(position[n] for n in components[i]))
        done.add(chosen)
        order.extend(sorted(components[chosen], key=position.__getitem__))
    return tuple(order)


def _components(adjacency: Mapping[str, list[str]], nodes: list[str]) -> list[list[str]]:
    """
    Tarjan's strongly connected components, iteratively (no recursion limit).
    """
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index_of:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index_of[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = adjacency[node]
            if position < len(targets):
                work.append((node, position + 1))
                target = targets[position]
                if target not in index_of:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index_of[target])
                continue
            if low[node] == index_of[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result


# -- cascades -------------------------------------------------------------------------


@attrs.frozen
class ReloadPlan:
    """
    The modules a reload would apply, in order, without applying them.

    Attributes:
        trigger: The module asked for; always first in ``modules``.
        modules: Every module the reload would run, each after the modules it
            depends on (a cascade's dependents within its reach, or the trigger alone).
        adopted: The modules of ``modules`` not tracked yet: the reload adopts
            them (as `Tracker.track` does) before running their new code.

    .. versionadded:: 0.2.0
    """

    trigger: str
    modules: tuple[str, ...]
    adopted: tuple[str, ...] = ()


#: Modules a cascade never reaches unless a pattern names them: the program being run
#: (reloading it would run the whole script again) and versionload itself.
_NEVER_BY_DEFAULT = ("__main__", "__mp_main__")
_OWN_PACKAGE = __name__.partition(".")[0]


def _excluded_roots() -> tuple[str, ...]:
    """
    The directories of code that is not the application's: the standard library and
    every place installed distributions live in, resolved.
    """
    found: set[str] = set()
    schemes = [sysconfig.get_paths()]
    # In a virtual environment the standard library lives under the base prefix.
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix, "installed_base": sys.base_prefix}
    schemes.append(sysconfig.get_paths(vars=base))
    for paths in schemes:
        found.update(paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths)
    # ``site`` knows more (user site, distribution-specific dist-packages); it may be
    # absent or reduced (python -S, embedded interpreters).
    site_paths = getattr(site, "getsitepackages", None)
    if callable(site_paths):
        found.update(site_paths())
    user_site = getattr(site, "getusersitepackages", None)
    if callable(user_site):
        found.add(user_site())
    return tuple(sorted({resolve(path) for path in found if path}))


_roots_lock = threading.Lock()
renew_after_fork(sys.modules[__name__], "_roots_lock", threading.Lock)
_roots: list[tuple[str, ...]] = []
_app_origins: dict[str, bool] = {}
_MAX_ORIGINS = 8192
_INSTALLED_DIRS = frozenset({"site-packages", "dist-packages"})


def is_app_origin(origin: str) -> bool:
    """
    Whether a module's file is the application's own code: not in the standard
    library nor in an installed distribution's directory (``sysconfig``'s stdlib,
    purelib and platlib paths, ``site``'s site-packages, or any directory named
    ``site-packages`` or ``dist-packages``).
    """
    with _roots_lock:
        known = _app_origins.get(origin)
        if not _roots:
            _roots.append(_excluded_roots())
        roots = _roots[0]
    if known is not None:
        return known
    parts = set(resolve(origin).replace("\\", "/").split("/"))
    answer = not (parts & _INSTALLED_DIRS) and not is_under(origin, roots)
    with _roots_lock:
        if len(_app_origins) >= _MAX_ORIGINS:
            _app_origins.clear()
        _app_origins[origin] = answer
    return answer


def _file_origin(module: ModuleType) -> str | None:
    # Only the spec's location: a module without a spec (made by hand, with a
    # ``__file__`` or not) is nobody's code to reload by default.
    spec = module.__dict__.get("__spec__")
    origin = getattr(spec, "origin", None) if getattr(spec, "has_location", False) else None
    return origin if isinstance(origin, str) else None


def _under_own_name(key: str, entry: object) -> ModuleType | None:
    """
    The module in ``sys.modules[key]`` if it is one and ``key`` is its own name: an
    alias (``sys.modules["old"] = new``) is the same module, reached under its own name.
    """
    if not isinstance(entry, ModuleType):
        return None
    own = entry.__dict__
    spec = own.get("__spec__")
    name = getattr(spec, "name", None) if spec is not None else own.get("__name__")
    return entry if name == key else None


def in_reach(name: str, module: ModuleType, trigger: str, patterns: tuple[str, ...] | None) -> bool:
    """
    Whether a cascade from ``trigger`` may reload ``name``: with ``patterns``, exactly
    the names they match (``fnmatch``; ``"pkg.*"`` also covers ``pkg``); by default
    the modules of the trigger's top-level package and the application's own code.
    """
    if patterns is not None:
        return name_matches(name, patterns)
    top = trigger.partition(".")[0]
    if name == top or name.startswith(f"{top}."):
        return True
    first = name.partition(".")[0]
    if name in _NEVER_BY_DEFAULT or first == _OWN_PACKAGE or first in sys.stdlib_module_names:
        return False
    origin = _file_origin(module)
    return origin is not None and is_app_origin(origin)


def cascade_plan(
    registry: Registry, trigger: str, module: ModuleType, patterns: tuple[str, ...] | None
) -> ReloadPlan:
    """
    ``trigger`` and the modules within reach (`in_reach`) that depend on it, directly
    or through other modules within reach, in the order to reload them.

    Nodes are the tracked modules first (in tracking order), then the modules in
    ``sys.modules`` that are not tracked (in the order they were put there): the order
    that breaks ties and orders an import cycle.
    """
    nodes: dict[str, ModuleType] = {trigger: module}
    versions: dict[str, int] = {}
    for name in registry.names():
        found = registry.find(name)
        if found is None or sys.modules.get(name) is not found[0]:
            continue
        if name == trigger or in_reach(name, found[0], trigger, patterns):
            nodes[name] = found[0]
            versions[name] = found[1].current_number
    for name, entry in list(sys.modules.items()):
        found_module = None if name in nodes else _under_own_name(name, entry)
        if found_module is not None and in_reach(name, found_module, trigger, patterns):
            nodes[name] = found_module
    # Rank: tracking order, then sys.modules order; the trigger's place is fixed by
    # cascade_order.
    ordered = [name for name in nodes if name in versions] + [n for n in nodes if n not in versions]
    edges: dict[str, tuple[str, ...]] = {}
    for name in ordered:
        each = nodes[name]
        # Untracked modules are cached under version 0, tracked ones under their version.
        candidates = set(_code_imports(name, each, versions.get(name, 0)))
        candidates.update((found,) for found in _namespace_imports(name, each.__dict__))
        resolved = {next((n for n in alternatives if n in nodes), None) for alternatives in candidates}
        edges[name] = tuple(sorted(n for n in resolved if n is not None and n != name))
    order = cascade_order(edges, trigger)
    adopted = tuple(name for name in order if registry.history_of(name, nodes[name]) is None)
    return ReloadPlan(trigger=trigger, modules=order, adopted=adopted)
