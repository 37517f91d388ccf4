"""
In-place updates: old function and class objects take on the new code.

After a reload's new code has run, each function and class the module defines
that existed before (same name in the namespace, same ``__module__``) is updated
in place and put back under its name, so every reference held elsewhere (``from m
import f``, registries, callbacks, bound methods, instances, subclasses) sees the
new behaviour:

* a function gets the new ``__code__``, ``__defaults__``, ``__kwdefaults__``,
  ``__annotations__``, ``__doc__``, ``__dict__``, ``__name__`` and ``__qualname__``;
  if it is a closure, its cells get the new function's cell contents. A function
  whose free variables changed cannot take the new code (the closure is fixed at
  creation): it is rebound instead, and reported.
* a class gets the new class's attributes (added, changed, removed). Its methods,
  ``staticmethod`` / ``classmethod`` functions, property accessors and nested classes
  are themselves updated in place, so methods fetched before the update run the new
  code too. New methods that use ``super()`` are pointed at the old class.

A class is rebound instead (a normal reload for that name), and reported, when a
safe update is not possible: its metaclass changed, or is not ``type`` or
``abc.ABCMeta`` (enums included: their members are instances built with the class;
other metaclasses may have registered or computed things the update cannot
redo); its bases changed; its instance layout (``__slots__``) changed; or it is a
dataclass, attrs class or named tuple whose fields changed (existing instances would
lack them).

Every change is logged with the object's previous state first, so a failed group
is undone exactly, and a `Ledger` keeps each object's state per version, so a
rollback puts back exactly the code and attributes that version had.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from types import CellType, FunctionType, GetSetDescriptorType, MemberDescriptorType
from typing import Any

import attrs

from ._fork import renew_after_fork
from ._history import ModuleHistory

_MISSING: Any = object()
_EMPTY: Any = object()

#: Class attributes never copied: the instance layout and the ABC registry belong
#: to the class object itself.
_ALWAYS_KEPT = frozenset({"__dict__", "__weakref__", "_abc_impl"})


@attrs.frozen(eq=False)
class _FunctionState:
    code: Any
    defaults: Any
    kwdefaults: Any
    annotations: Any
    doc: Any
    attributes: Any
    name: str
    qualname: str
    cells: tuple[Any, ...]


@attrs.frozen(eq=False)
class _ClassState:
    attributes: dict[str, Any]


_State = _FunctionState | _ClassState


def _cell_value(cell: CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return _EMPTY


def _set_cell(cell: CellType, value: Any) -> None:
    if value is _EMPTY:
        with contextlib.suppress(ValueError):
            del cell.cell_contents
    else:
        cell.cell_contents = value


def _layout_names(cls: type) -> set[str]:
    # Slot descriptors and __dict__/__weakref__ describe this class's own instance
    # layout; copying another class's would break instances.
    return {
        key
        for key, value in vars(cls).items()
        if isinstance(value, (MemberDescriptorType, GetSetDescriptorType))
        and getattr(value, "__objclass__", None) is cls
    } | _ALWAYS_KEPT


def capture(obj: Any) -> _State:
    """
    The state of a function or class that an in-place update changes.
    """
    if isinstance(obj, FunctionType):
        return _FunctionState(
            code=obj.__code__,
            defaults=obj.__defaults__,
            kwdefaults=obj.__kwdefaults__,
            annotations=obj.__annotations__,
            doc=obj.__doc__,
            attributes=obj.__dict__,
            name=obj.__name__,
            qualname=obj.__qualname__,
            cells=tuple(_cell_value(cell) for cell in obj.__closure__ or ()),
        )
    kept = _layout_names(obj)
    return _ClassState({key: value for key, value in vars(obj).items() if key not in kept})


def apply(obj: Any, state: _State) -> None:
    """
    Put a function or class back into a state taken by `capture`.
    """
    if isinstance(state, _FunctionState):
        obj.__code__ = state.code
        obj.__defaults__ = state.defaults
        obj.__kwdefaults__ = state.kwdefaults
        obj.__annotations__ = state.annotations
        obj.__doc__ = state.doc
        obj.__dict__ = state.attributes
        obj.__name__ = state.name
        obj.__qualname__ = state.qualname
        for cell, value in zip(obj.__closure__ or (), state.cells, strict=True):
            _set_cell(cell, value)
        return
    _set_class_attributes(obj, state.attributes)


def _set_class_attributes(cls: type, attributes: Mapping[str, Any]) -> None:
    kept = _layout_names(cls)
    for key, value in attributes.items():
        if vars(cls).get(key, _MISSING) is not value:
            setattr(cls, key, value)
    for key in [key for key in vars(cls) if key not in attributes and key not in kept]:
        delattr(cls, key)
    if issubclass(type(cls), abc.ABCMeta):
        abc.update_abstractmethods(cls)


@attrs.frozen
class Fallback:
    """
    An object that could not be updated in place and was rebound instead.
    """

    qualname: str
    reason: str

    def __str__(self) -> str:
        return f"{self.qualname}: {self.reason}"


class Patcher:
    """
    Updates one module's old objects from its new namespace, logging every change.
    """

    def __init__(self, module: str) -> None:
        self.module = module
        #: (object, state before its first change), in the order changed.
        self.log: list[tuple[Any, _State]] = []
        self.patched: list[str] = []
        self.fallbacks: list[Fallback] = []
        # new object -> what stands for it now (the old object, or itself); the new
        # object is kept alive so its id is not reused while this runs.
        self._seen: dict[int, tuple[Any, Any]] = {}
        self._logged: set[int] = set()

    # -- entry points ----------------------------------------------------------------

    def update_namespace(self, namespace: MutableMapping[str, Any], before: Mapping[str, Any]) -> None:
        """
        Update each old object in ``before`` from its new counterpart in ``namespace``,
        and bind the old object again. On error, everything done so far is undone.
        """
        try:
            for key, new in list(namespace.items()):
                old = before.get(key, _MISSING)
                if old is _MISSING or old is new:
                    continue
                replacement = self.update(old, new)
                if replacement is not new:
                    namespace[key] = replacement
            self._adopt_instances(namespace)
        except BaseException:
            self.undo()
            raise

    def undo(self) -> None:
        """
        Put every changed object back as it was, newest change first.
        """
        for obj, state in reversed(self.log):
            apply(obj, state)
        self.log.clear()
        self._logged.clear()

    def changed_objects(self) -> list[Any]:
        return [obj for obj, _ in self.log]

    # -- dispatch ---------------------------------------------------------------------

    def _owned(self, obj: Any) -> bool:
        return getattr(obj, "__module__", None) == self.module

    def update(self, old: Any, new: Any) -> Any:
        """
        Update ``old`` from ``new`` if both are this module's functions or classes;
        returns what should be bound: ``old`` when updated, else ``new``.
        """
        known = self._seen.get(id(new))
        if known is not None:
            return known[1]
        result = new
        # The same definition (qualified name) from this module, and an old object not
        # already updated from another new one (``g = f`` in one version, ``def g`` in
        # the next): anything else is a different object, rebound as in a plain reload.
        counterpart = (
            self._owned(old)
            and self._owned(new)
            and getattr(old, "__qualname__", None) == getattr(new, "__qualname__", None)
            and id(old) not in self._logged
        )
        if counterpart and isinstance(old, FunctionType) and isinstance(new, FunctionType):
            if self._function(old, new):
                result = old
        elif counterpart and isinstance(old, type) and isinstance(new, type) and self._class(old, new):
            result = old
        self._seen[id(new)] = (new, result)
        return result

    def _log(self, obj: Any) -> None:
        if id(obj) not in self._logged:
            self._logged.add(id(obj))
            self.log.append((obj, capture(obj)))

    def _fallback(self, obj: Any, reason: str) -> None:
        self.fallbacks.append(Fallback(getattr(obj, "__qualname__", repr(obj)), reason))

    # -- functions --------------------------------------------------------------------

    def _function(self, old: FunctionType, new: FunctionType) -> bool:
        old_free, new_free = old.__code__.co_freevars, new.__code__.co_freevars
        if old_free != new_free:
            self._fallback(
                old, f"free variables changed ({', '.join(old_free) or '-'} -> {', '.join(new_free) or '-'})"
            )
            return False
        self._log(old)
        for old_cell, new_cell in zip(old.__closure__ or (), new.__closure__ or (), strict=True):
            if old_cell is not new_cell:
                _set_cell(old_cell, self._current(_cell_value(new_cell)))
        old.__code__ = new.__code__
        old.__defaults__ = new.__defaults__
        old.__kwdefaults__ = new.__kwdefaults__
        old.__annotations__ = new.__annotations__
        old.__doc__ = new.__doc__
        old.__dict__ = dict(new.__dict__)
        old.__name__ = new.__name__
        old.__qualname__ = new.__qualname__
        self.patched.append(old.__qualname__)
        return True

    def _current(self, value: Any) -> Any:
        # A cell holding a new class or function that was folded into an old one
        # must hold the old one (``__class__`` cells of methods, above all).
        known = self._seen.get(id(value))
        return known[1] if known is not None else value

    # -- classes ----------------------------------------------------------------------

    def _class(self, old: type, new: type) -> bool:
        reason = self._class_problem(old, new)
        if reason is not None:
            self._fallback(old, reason)
            return False
        # From here on the new class stands for the old one, also inside itself.
        self._seen[id(new)] = (new, old)
        self._retarget_class_cells(new, old)
        self._log(old)
        kept = _layout_names(old) | _layout_names(new)
        for key, value in list(vars(new).items()):
            if key in kept:
                continue
            current = vars(old).get(key, _MISSING)
            replacement = value if current is _MISSING else self._member(current, value)
            if vars(old).get(key, _MISSING) is not replacement:
                setattr(old, key, replacement)
        for key in [key for key in vars(old) if key not in vars(new) and key not in kept]:
            delattr(old, key)
        if issubclass(type(old), abc.ABCMeta):
            abc.update_abstractmethods(old)
        self.patched.append(old.__qualname__)
        return True

    def _class_problem(self, old: type, new: type) -> str | None:
        meta = type(old)
        if self._current(type(new)) is not meta:
            return f"metaclass changed ({meta.__qualname__} -> {type(new).__qualname__})"
        if isinstance(old, enum.EnumMeta):
            return "enum class: its members are instances created with the class"
        if meta not in (type, abc.ABCMeta):
            return f"custom metaclass {meta.__qualname__}"
        if len(old.__bases__) != len(new.__bases__):
            return "bases changed"
        for old_base, new_base in zip(old.__bases__, new.__bases__, strict=True):
            # A base defined in this module is updated first, so that it can match.
            if new_base is not old_base and self.update(old_base, new_base) is not old_base:
                return "bases changed"
        if (
            _slots(old) != _slots(new)
            or old.__basicsize__ != new.__basicsize__
            or old.__itemsize__ != new.__itemsize__
            or ("__dict__" in vars(old)) != ("__dict__" in vars(new))
        ):
            return "__slots__ (instance layout) changed"
        old_fields, new_fields = vars(old).get("__dataclass_fields__"), vars(new).get("__dataclass_fields__")
        if (old_fields is None) != (new_fields is None) or (
            old_fields is not None and list(old_fields) != list(new_fields)  # type: ignore[arg-type]
        ):
            return "dataclass fields changed"
        if vars(old).get("_fields") != vars(new).get("_fields"):
            return "namedtuple fields changed"
        old_attrs, new_attrs = vars(old).get("__attrs_attrs__"), vars(new).get("__attrs_attrs__")
        if (old_attrs is None) != (new_attrs is None) or (
            old_attrs is not None and [a.name for a in old_attrs] != [a.name for a in new_attrs]  # type: ignore[union-attr]
        ):
            return "attrs fields changed"
        return None

    def _retarget_class_cells(self, new: type, old: type) -> None:
        # Methods compiled in the new class body see it through their ``__class__``
        # cell (zero-argument super()); the methods that move into the old class
        # must see the old class, or super() rejects the old class's instances.
        for function in _functions_in(vars(new).values()):
            code = function.__code__
            if "__class__" in code.co_freevars and function.__closure__ is not None:
                cell = function.__closure__[code.co_freevars.index("__class__")]
                if _cell_value(cell) is new:
                    cell.cell_contents = old

    def _member(self, current: Any, value: Any) -> Any:
        if (isinstance(current, FunctionType) and isinstance(value, FunctionType)) or (
            isinstance(current, type) and isinstance(value, type)
        ):
            return self.update(current, value)
        if isinstance(current, (staticmethod, classmethod)) and type(current) is type(value):
            inner = self.update(current.__func__, value.__func__)
            return current if inner is current.__func__ else value
        if type(current) is property and type(value) is property:
            accessors = [(current.fget, value.fget), (current.fset, value.fset), (current.fdel, value.fdel)]
            if current.__doc__ != value.__doc__ or any((a is None) != (b is None) for a, b in accessors):
                return value
            updated = all(a is None or self.update(a, b) is a for a, b in accessors)
            return current if updated else value
        return value

    def _adopt_instances(self, namespace: MutableMapping[str, Any]) -> None:
        # Module-level instances made by the new code belong to the new class
        # objects, which are being dropped: give them the old (updated) classes,
        # whose layout was checked to be the same.
        for value in list(namespace.values()):
            known = self._seen.get(id(type(value)))
            if known is not None and known[1] is not known[0] and not isinstance(value, type):
                with contextlib.suppress(TypeError):
                    value.__class__ = known[1]


def _slots(cls: type) -> tuple[str, ...]:
    slots = vars(cls).get("__slots__", ())
    return (slots,) if isinstance(slots, str) else tuple(slots)


def _functions_in(values: Iterable[Any]) -> Iterable[FunctionType]:
    for value in values:
        if isinstance(value, FunctionType):
            yield value
        elif isinstance(value, (staticmethod, classmethod)) and isinstance(value.__func__, FunctionType):
            yield value.__func__
        elif isinstance(value, property):
            yield from (f for f in (value.fget, value.fset, value.fdel) if isinstance(f, FunctionType))


#: version number -> id(object) -> (object, its state at that version)
_ByVersion = dict[int, dict[int, tuple[Any, _State]]]


class Ledger:
    """
    For each module, the state every in-place-updated object had at each version.

    An in-place reload from version P to version V records each changed object's
    state before (its state at P) and after (at V). A rollback to version N then
    puts every object recorded for N back into that state, so the objects run the
    code they ran at N. Entries for pruned versions are dropped on the next update;
    a new history for the name (module replaced, forgotten, cleared) starts afresh.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        renew_after_fork(self, "_lock", threading.Lock)
        self._modules: dict[str, tuple[weakref.ref[ModuleHistory], _ByVersion]] = {}

    def _states(self, name: str, history: ModuleHistory) -> _ByVersion:
        # Drop what belongs to ended histories (module collected, forgotten, cleared):
        # the states hold functions, whose globals would keep a dead module's dict alive.
        for ended in [key for key, (ref, _) in self._modules.items() if ref() is None]:
            del self._modules[ended]
        entry = self._modules.get(name)
        if entry is None or entry[0]() is not history:
            entry = (weakref.ref(history), {})
            self._modules[name] = entry
        return entry[1]

    def record(
        self, name: str, history: ModuleHistory, previous: int, version: int, patcher: Patcher
    ) -> None:
        """
        Note the states before (for ``previous``) and now (for ``version``) of what ``patcher`` changed.
        """
        with self._lock:
            states = self._states(name, history)
            before = states.setdefault(previous, {})
            for obj, state in patcher.log:
                before[id(obj)] = (obj, state)
            after = states.setdefault(version, {})
            for obj in patcher.changed_objects():
                after[id(obj)] = (obj, capture(obj))
            kept = set(history.numbers)
            for number in [number for number in states if number not in kept]:
                del states[number]

    def code_versions(self, name: str, history: ModuleHistory) -> dict[int, int]:
        """
        For each code object an updated function had at some version: id -> lowest such version.
        """
        found: dict[int, int] = {}
        with self._lock:
            for number, recorded in sorted(self._states(name, history).items()):
                for _, state in recorded.values():
                    if isinstance(state, _FunctionState):
                        found.setdefault(id(state.code), number)
        return found

    def has_states(self, name: str) -> bool:
        """
        Whether any in-place update of module ``name`` was recorded (one dict lookup, no lock).
        """
        return name in self._modules

    def restore(self, name: str, history: ModuleHistory, version: int) -> Callable[[], None]:
        """
        Put every object recorded for ``version`` back in that state, all or none.

        Returns what puts them back into their states before (for a transaction that
        fails later). If putting one back raises, those already put back get their
        states before again, and the error propagates.
        """
        with self._lock:
            recorded = list(self._states(name, history).get(version, {}).values())
        # Functions first, classes last: a class state only rebinds attributes.
        recorded.sort(key=lambda item: isinstance(item[1], _ClassState))
        # Each object's state now, taken before any changes: its exact way back.
        previous = [(obj, capture(obj)) for obj, _ in recorded]
        done = 0
        try:
            for obj, state in recorded:
                apply(obj, state)
                done += 1
        except BaseException:
            # The one that raised too: it may have changed part of its state.
            for obj, state in reversed(previous[: done + 1]):
                apply(obj, state)
            raise

        def revert() -> None:
            for obj, state in reversed(previous):
                apply(obj, state)

        return revert
