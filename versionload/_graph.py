"""
Which tracked modules depend on which, and the order a cascade reloads them in.

The import hook alone cannot build this graph: it sees only a module's *first*
import, and every later ``import b`` is served from ``sys.modules`` without asking
any finder. So edges are derived, when asked for, from two things that see every
import a module makes:

* its compiled code: every ``IMPORT_NAME`` (with the level and ``fromlist`` that
  precede it) and ``IMPORT_FROM`` instruction, in the module body and, recursively,
  in every function and class body nested in it, resolved against the module's
  ``__package__``. This sees imports inside functions (lazy imports) too. The code
  comes from the loader's ``get_code`` (a module keeps no reference to the code it
  ran), read the first time the graph is needed while a version is current and
  cached for that version; versionload's reloads refresh the bytecode cache, so that
  is the code the version ran unless the file was edited since.
* its namespace: modules bound in it (except a package's own submodules, which
  the import system binds there), and classes and functions whose
  ``__module__`` is another tracked module (names taken with ``from b import f``,
  or bound by code the compiler cannot see, such as ``importlib.import_module``).

``import a.b.c`` and ``from a.b import c`` count as a dependency on ``a.b.c`` when
that is a module, otherwise on ``a.b``. Only tracked modules are nodes; an edge to
oneself is dropped.
"""

from __future__ import annotations

import dis
import importlib.util
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from types import CodeType, FunctionType, ModuleType

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
    What ``code`` (and the code nested in it) imports, as absolute module names.

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
    stack = [code]
    while stack:
        each = stack.pop()
        yield each
        stack.extend(const for const in each.co_consts if isinstance(const, CodeType))


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
