"""
Generated Python source for the benchmarks: a package tree of realistic modules,
and single modules with a chosen number of top-level names.
"""

from __future__ import annotations

import compileall
from pathlib import Path

_MODULE = '''\
"""
Generated module {index} of the versionload benchmark tree: a few imports,
constants, functions and classes, about the size of a typical library module.
"""

from __future__ import annotations

import functools
import os
import re
from collections import OrderedDict
from typing import Any
{sibling}
TIMEOUT_{index} = {index}.5
RETRIES = 3
NAME = "module_{index}"
PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")
DEFAULTS = {{"timeout": TIMEOUT_{index}, "retries": RETRIES, "name": NAME}}
LEVELS = ("debug", "info", "warning", "error")
LIMITS = frozenset({{1, 2, 3, 5, 8, 13}})
ENV_PREFIX = "BENCH_{index}_"


def parse(text: str) -> list[str]:
    """Split ``text`` into words that are valid identifiers."""
    words = [word.strip() for word in text.split(",")]
    return [word for word in words if PATTERN.match(word)]


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Merge two settings dictionaries, ``extra`` winning."""
    result = OrderedDict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return dict(result)


def from_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The settings found in the environment under this module's prefix."""
    environ = os.environ if environ is None else environ
    return {{k[len(ENV_PREFIX):].lower(): v for k, v in environ.items() if k.startswith(ENV_PREFIX)}}


@functools.lru_cache(maxsize=128)
def fibonacci(n: int) -> int:
    """The n-th Fibonacci number, cached."""
    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    """Clamp ``value`` into [low, high]."""
    return max(low, min(high, value))


class Settings:
    """Settings of component {index}."""

    def __init__(self, **values: Any) -> None:
        self._values = merge(DEFAULTS, values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __repr__(self) -> str:
        return f"Settings({{self._values!r}})"

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    @property
    def timeout(self) -> float:
        return float(self._values["timeout"])


class Registry:
    """A name to object mapping with registration by decorator."""

    def __init__(self) -> None:
        self._items: dict[str, Any] = {{}}

    def register(self, name: str) -> Any:
        def decorator(obj: Any) -> Any:
            self._items[name] = obj
            return obj

        return decorator

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)


class Error{index}(Exception):
    """Raised when component {index} fails."""

    def __init__(self, message: str, *, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


REGISTRY = Registry()


@REGISTRY.register("clamp")
def registered_clamp(value: float) -> float:
    return clamp(value)
'''


def _package_init(index: int, children: list[str]) -> str:
    imports = "".join(f"from . import {child}\n" for child in children)
    docstring = f'"""\nGenerated package {index} of the versionload benchmark tree.\n"""\n'
    return f'{docstring}\n{imports}\nVERSION = "{index}.0"\n'


def write_tree(
    root: Path, package: str, modules: int, *, subpackages: int = 4, per_subpackage: int = 24
) -> int:
    """
    Write a package ``package`` under ``root`` holding ``modules`` modules in all.

    The top package holds packages, each holding ``subpackages`` subpackages of
    ``per_subpackage`` modules; every ``__init__`` imports its children, so importing
    the top package imports the whole tree, and each module also imports its next
    sibling. Returns the number of modules written (``modules``, counting packages).
    """
    count = 1  # the top package
    top_children: list[str] = []
    index = 0
    while count < modules:
        pkg_name = f"pkg{len(top_children)}"
        pkg_dir = root / package / pkg_name
        pkg_dir.mkdir(parents=True)
        top_children.append(pkg_name)
        count += 1
        pkg_children: list[str] = []
        for sub in range(subpackages):
            if count >= modules:
                break
            sub_name = f"sub{sub}"
            sub_dir = pkg_dir / sub_name
            sub_dir.mkdir()
            pkg_children.append(sub_name)
            count += 1
            names = []
            for _ in range(per_subpackage):
                if count >= modules:
                    break
                names.append(f"mod{len(names)}")
                count += 1
            for position, name in enumerate(names):
                index += 1
                sibling = f"from . import {names[position + 1]}\n" if position + 1 < len(names) else ""
                (sub_dir / f"{name}.py").write_text(_MODULE.format(index=index, sibling=sibling))
            index += 1
            (sub_dir / "__init__.py").write_text(_package_init(index, names))
        index += 1
        (pkg_dir / "__init__.py").write_text(_package_init(index, pkg_children))
    (root / package).mkdir(parents=True, exist_ok=True)
    (root / package / "__init__.py").write_text(_package_init(0, top_children))
    return count


def module_with_names(names: int, *, edit: int = 0) -> str:
    """
    Source of a module binding ``names`` top-level names (besides the module dunders):
    about 70% constants, 20% functions, 10% classes. ``edit`` changes one constant,
    keeping the size, so successive edits make distinct sources of equal length.
    """
    lines = ['"""Generated module for the reload benchmark."""', "", "import os", ""]
    lines.append(f"EDIT = {edit:8d}")
    made = 2  # os, EDIT
    i = 0
    while made < names:
        kind = i % 10
        if kind < 7:
            lines.append(f"CONST_{i} = ({i}, 'value {i}', {i}.25)")
        elif kind < 9:
            lines.append(f"def function_{i}(x, y={i}):\n    return (x + y) * EDIT\n")
        else:
            lines.append(
                f"class Class_{i}:\n    limit = {i}\n\n    def method(self):\n        return self.limit\n"
            )
        made += 1
        i += 1
    return "\n".join(lines) + "\n"


def compile_tree(root: Path) -> None:
    """
    Write the bytecode caches of every module under ``root``, as an installer would.
    """
    compileall.compile_dir(str(root), quiet=1, workers=1)
