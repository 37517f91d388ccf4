"""
`stale`: which live objects still use code from an older version of a module.

The module's *current* code is every code object reachable from its namespace:
its functions (and the code nested in them, so closures a current factory makes
at run time count as current), and its classes with their methods, static and
class methods, property accessors and nested classes. Everything else that
belongs to the module is old:

* a function whose ``__globals__`` is the module's namespace and whose code is
  not current (``from m import f`` taken before a reload, a callback registered
  by old code);
* a class whose ``__module__`` is the module's and that is not reachable from its
  namespace (an old class held elsewhere, or an old base of a current subclass);
* an instance of such a class;
* a frame of a running thread executing old code of the module.

Objects are found by walking, breadth first and to a bounded depth, from every
*other* module's namespace in ``sys.modules`` through dicts, lists, tuples, sets,
instance ``__dict__``s, bound methods, ``functools.partial`` objects, function
defaults and closures, and class attributes and bases. The module's own namespace
counts as current (names a reload no longer defines survive there, as with
``importlib.reload``). Classes a current function makes at run time, and objects
reachable only through other routes (C containers, generators, other threads'
locals) are not seen.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from types import CodeType, FrameType, FunctionType, MethodType, ModuleType
from typing import Any, Literal

import attrs

from ._history import ModuleHistory

StaleKind = Literal["function", "class", "instance", "frame"]

_MAX_DEPTH = 6
_MAX_OBJECTS = 200_000
_MAX_ITEMS = 10_000
_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), range, CodeType, ModuleType)


@attrs.frozen
class StaleObject:
    """
    One live object that still uses an older version's code.

    Attributes:
        kind: ``"function"``, ``"class"``, ``"instance"`` or ``"frame"``.
        qualname: The function's or class's qualified name (for an instance, its
            class's; for a frame, the function it is executing).
        where: How it was reached, e.g. ``"app.routes.HANDLERS['index']"``, or for
            a frame the thread and the line.
        version: The version whose code it is, when that version is still in the
            history; None when unknown (pruned, or code replaced by an in-place update).

    .. versionadded:: 0.1.0
    """

    kind: StaleKind
    qualname: str
    where: str
    version: int | None


@attrs.frozen
class StaleReport:
    """
    The live objects that still use code older than a module's current version.

    Empty, and false, when nothing old is in use. Iterating yields `StaleObject` s.

    .. versionadded:: 0.1.0
    """

    module: str
    current_version: int
    objects: tuple[StaleObject, ...]

    def __bool__(self) -> bool:
        return bool(self.objects)

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[StaleObject]:
        return iter(self.objects)

    def _of(self, kind: StaleKind) -> tuple[StaleObject, ...]:
        return tuple(each for each in self.objects if each.kind == kind)

    @property
    def functions(self) -> tuple[StaleObject, ...]:
        return self._of("function")

    @property
    def classes(self) -> tuple[StaleObject, ...]:
        return self._of("class")

    @property
    def instances(self) -> tuple[StaleObject, ...]:
        return self._of("instance")

    @property
    def frames(self) -> tuple[StaleObject, ...]:
        return self._of("frame")

    @property
    def versions(self) -> frozenset[int]:
        """
        The older version numbers known to be still in use.
        """
        return frozenset(each.version for each in self.objects if each.version is not None)


class _Code:
    """
    The code objects and classes reachable from one namespace.
    """

    def __init__(self, name: str, namespace: Mapping[str, object]) -> None:
        self.name = name
        self.codes: set[int] = set()
        self.classes: set[int] = set()
        self.functions: set[int] = set()
        self._keep: list[object] = []
        for value in list(namespace.values()):
            self._add(value)

    def _add(self, value: object) -> None:
        if isinstance(value, FunctionType):
            if id(value) in self.functions:
                return
            self.functions.add(id(value))
            self._keep.append(value)
            stack = [value.__code__]
            while stack:
                code = stack.pop()
                if id(code) not in self.codes:
                    self.codes.add(id(code))
                    self._keep.append(code)
                    stack.extend(c for c in code.co_consts if isinstance(c, CodeType))
        elif isinstance(value, (staticmethod, classmethod)):
            self._add(value.__func__)
        elif isinstance(value, property):
            for accessor in (value.fget, value.fset, value.fdel):
                self._add(accessor)
        elif isinstance(value, type) and getattr(value, "__module__", None) == self.name:
            if id(value) in self.classes:
                return
            self.classes.add(id(value))
            self._keep.append(value)
            for member in list(vars(value).values()):
                self._add(member)


def stale_report(
    name: str, module: ModuleType, history: ModuleHistory, replaced_codes: Mapping[int, int] | None = None
) -> StaleReport:
    """
    Build the `StaleReport` for ``module`` (see the module docstring for what is searched).

    ``replaced_codes`` maps the ids of code objects that in-place updates replaced to
    their versions, so frames still running such code get a version number.
    """
    namespace = module.__dict__
    current = _Code(name, namespace)
    # Which version each older object or code belongs to: the first version it appears in.
    code_version: dict[int, int] = {
        key: number for key, number in (replaced_codes or {}).items() if key not in current.codes
    }
    class_version: dict[int, int] = {}
    for version in history.versions:
        if version.number == history.current_number:
            continue
        seen = _Code(name, version.bindings)
        for key in seen.codes - current.codes:
            code_version.setdefault(key, version.number)
        for key in seen.classes - current.classes:
            class_version.setdefault(key, version.number)

    found: list[StaleObject] = []
    reported: set[int] = set()

    def report(
        kind: StaleKind, obj: Any, qualname: str, step: _Step, version: int | None, note: str = ""
    ) -> None:
        if id(obj) not in reported:
            reported.add(id(obj))
            found.append(StaleObject(kind, qualname, _path(step) + note, version))

    def old_class(cls: type) -> bool:
        return getattr(cls, "__module__", None) == name and id(cls) not in current.classes

    for obj, where in _walk_steps(module):
        if isinstance(obj, FunctionType):
            if obj.__globals__ is namespace and id(obj.__code__) not in current.codes:
                report("function", obj, obj.__qualname__, where, code_version.get(id(obj.__code__)))
        elif isinstance(obj, type):
            for base in obj.__mro__:
                if old_class(base):
                    note = "" if base is obj else f" (base of {obj.__qualname__})"
                    report("class", base, base.__qualname__, where, class_version.get(id(base)), note)
        else:
            cls = next((base for base in type(obj).__mro__ if old_class(base)), None)
            if cls is not None:
                report("instance", obj, type(obj).__qualname__, where, class_version.get(id(cls)))

    threads = {thread.ident: thread.name for thread in threading.enumerate()}
    frames = sys._current_frames()
    for ident, top in frames.items():
        frame: FrameType | None = top
        while frame is not None:
            code = frame.f_code
            if frame.f_globals is namespace and code.co_name != "<module>" and id(code) not in current.codes:
                found.append(
                    StaleObject(
                        "frame",
                        getattr(code, "co_qualname", code.co_name),
                        f"thread {threads.get(ident, '?')} ({ident}) at {code.co_filename}:{frame.f_lineno}",
                        code_version.get(id(code)),
                    )
                )
            frame = frame.f_back
    frames.clear()  # frames refer to their locals: drop them promptly
    return StaleReport(module=name, current_version=history.current_number, objects=tuple(found))


# A path is built only for the few objects reported: each queued object carries its
# parent's step and how it was reached from there.
_Step = tuple[Any, str, Any]  # (parent step or None, kind, label)


def _path(step: _Step) -> str:
    parts: list[str] = []
    node: _Step | None = step
    while node is not None:
        parent, kind, label = node
        if kind == "root":
            parts.append(label)
        elif kind == "key":
            parts.append(f"[{label!r}]")
        elif kind == "attr":
            parts.append(f".{label}")
        elif kind == "closure":
            parts.append(f".<closure {label}>")
        elif kind == "member":
            parts.append("{...}")
        node = parent
    return "".join(reversed(parts))


def _walk_steps(skip: ModuleType) -> Iterator[tuple[Any, _Step]]:
    queue: deque[tuple[Any, _Step, int]] = deque()
    visited: set[int] = {id(skip)}
    for module_name, other in list(sys.modules.items()):
        if isinstance(other, ModuleType) and other is not skip:
            visited.add(id(other))
            namespace = getattr(other, "__dict__", None)
            if isinstance(namespace, dict):
                for key, value in list(namespace.items()):
                    if not isinstance(value, _LEAVES):
                        queue.append((value, (None, "root", f"{module_name}.{key}"), 1))
    budget = _MAX_OBJECTS
    while queue and budget > 0:
        obj, step, depth = queue.popleft()
        if id(obj) in visited:
            continue
        visited.add(id(obj))
        budget -= 1
        yield obj, step
        if depth >= _MAX_DEPTH:
            continue
        for child, kind, label in _children(obj):
            if not isinstance(child, _LEAVES) and id(child) not in visited:
                queue.append((child, (step, kind, label), depth + 1))


def _children(obj: Any) -> Iterator[tuple[Any, str, Any]]:
    try:
        if isinstance(obj, dict):
            for index, (key, value) in enumerate(list(obj.items())):
                if index >= _MAX_ITEMS:
                    break
                yield value, "key", key
        elif isinstance(obj, (list, tuple)):
            for index, value in enumerate(list(obj[:_MAX_ITEMS])):
                yield value, "key", index
        elif isinstance(obj, (set, frozenset)):
            for index, value in enumerate(list(obj)):
                if index >= _MAX_ITEMS:
                    break
                yield value, "member", None
        elif isinstance(obj, MethodType):
            yield obj.__func__, "attr", "__func__"
            yield obj.__self__, "attr", "__self__"
        elif isinstance(obj, functools.partial):
            yield obj.func, "attr", "func"
            yield obj.args, "attr", "args"
            yield obj.keywords, "attr", "keywords"
        elif isinstance(obj, FunctionType):
            for index, value in enumerate(obj.__defaults__ or ()):
                yield value, "attr", f"__defaults__[{index}]"
            for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or (), strict=False):
                with contextlib.suppress(ValueError):
                    yield cell.cell_contents, "closure", name
        elif isinstance(obj, type):
            for key, value in list(vars(obj).items()):
                yield value, "attr", key
        elif isinstance(obj, (staticmethod, classmethod)):
            yield obj.__func__, "attr", "__func__"
        else:
            try:
                attributes = object.__getattribute__(obj, "__dict__")
            except Exception:  # noqa: BLE001 - objects without (or with odd) __dict__ are leaves
                return
            if isinstance(attributes, dict):
                for key, value in list(attributes.items()):
                    yield value, "attr", key
    except Exception:  # noqa: BLE001 - a container changing under us ends that branch, no more
        return
