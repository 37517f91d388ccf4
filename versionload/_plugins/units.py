"""
Plugin units: which modules reload together, their recorded states, and their order.

A plugin's *unit* is every loaded module in the top-level package that holds the entry
point's module (one level further down when that package is a namespace package shared
by several distributions). The modules of a unit are reloaded in `dependency_order`,
which is the graph's one `topological_order` over what each module imports or took
from the others.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import FunctionType, ModuleType
from typing import Literal

import attrs
import importlib_metadata

from .._tracker import topological_order
from .records import Plugin


@attrs.frozen
class State:
    """
    One recorded state of a unit: its modules' version numbers, the entry points and
    distribution versions as they were then, and the modules whose code ran to make it.
    """

    number: int
    reason: Literal["load", "reload"]
    created_at: datetime
    modules: Mapping[str, int]
    entry_points: Mapping[str, importlib_metadata.EntryPoint]
    dist_versions: Mapping[str, str | None]
    ran: tuple[str, ...] = ()


@attrs.define
class Unit:
    """
    The modules that reload together, their recorded states, and the current one.
    """

    root: str
    states: list[State] = attrs.Factory(list)
    current: int = 0

    def state(self, number: int) -> State:
        for state in self.states:
            if state.number == number:
                return state
        raise LookupError(number)

    def numbers(self) -> tuple[int, ...]:
        return tuple(state.number for state in self.states)


@attrs.define
class Entry:
    entry_point: importlib_metadata.EntryPoint
    unit: Unit
    plugin: Plugin


def distribution_of(entry_point: importlib_metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = entry_point.dist
    if dist is None:
        return None, None
    try:
        return dist.name, dist.version
    except Exception:  # noqa: BLE001 - the metadata was removed or rewritten under us
        return None, None


def is_namespace_package(module: object) -> bool:
    return hasattr(module, "__path__") and getattr(module, "__file__", None) is None


def unit_root(module_name: str) -> str:
    """
    The first package above (or at) ``module_name`` that is not a namespace package.
    """
    parts = module_name.split(".")
    for depth in range(1, len(parts) + 1):
        candidate = ".".join(parts[:depth])
        if not is_namespace_package(sys.modules.get(candidate)):
            return candidate
    return module_name


def source_removed(name: str) -> bool:
    """
    Whether the module was loaded from a file that no longer exists.
    """
    spec = getattr(sys.modules.get(name), "__spec__", None)
    origin = getattr(spec, "origin", None)
    if not getattr(spec, "has_location", False) or not isinstance(origin, str):
        return False
    return not os.path.exists(origin)


def in_unit(name: str, root: str) -> bool:
    return name == root or name.startswith(root + ".")


def unit_modules(root: str) -> list[str]:
    return [
        name
        for name, module in list(sys.modules.items())
        if in_unit(name, root) and isinstance(module, ModuleType) and not is_namespace_package(module)
    ]


def references(module: ModuleType, candidates: set[str]) -> set[str]:
    """
    The candidate modules that ``module``'s namespace refers to: modules bound in it,
    and classes and functions defined in them (``from .util import helper``), except
    its own parent packages.
    """
    found: set[str] = set()
    for value in list(vars(module).values()):
        if isinstance(value, ModuleType):
            target = getattr(value, "__name__", None)
        elif isinstance(value, (type, FunctionType)):
            target = value.__module__
        else:
            continue
        if isinstance(target, str) and target in candidates:
            found.add(target)
    found.discard(module.__name__)
    # ``import pkg.sibling`` binds the parent package, which is not what the module
    # needs first: packages normally import their submodules, so they come after.
    return {target for target in found if not module.__name__.startswith(target + ".")}


def dependency_order(
    names: list[str], rank: Mapping[str, int], edges: Mapping[str, Iterable[str]] | None = None
) -> list[str]:
    """
    Order modules so that each comes after the modules it imports from.

    Re-executing ``from .util import helper`` binds whatever ``util`` holds at that
    moment, so ``util`` must be reloaded before the module that imports from it.
    The dependencies are ``edges`` (module -> modules it depends on, as the tracker's
    dependency graph has them from each module's code and namespace) together with
    what each module's namespace took from the others; a module's own parent
    packages do not count (a package imports its submodules, so it comes after
    them). Among modules with no such constraint between them the order in which
    they were first tracked (``rank``) decides: with the import hook that is the order
    in which their first imports finished, which already put every module after the
    modules it imported. Modules in an import cycle come as one block, in rank order,
    where the first of them is due. The order is the one cascades use
    (``topological_order`` of the dependency graph).
    """
    candidates = set(names)
    needs = {name: references(sys.modules[name], candidates) for name in names}
    for name in names:
        needs[name].update(
            target
            for target in (edges or {}).get(name, ())
            if target in candidates and target != name and not name.startswith(target + ".")
        )
    return list(topological_order(needs, rank))
