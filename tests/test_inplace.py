"""
In-place updates (``update="in-place"``): old objects run the new code, and a rollback
puts exactly the old code and attributes back.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import pytest

import versionload

from .helpers import ModuleTree

FUNCTIONS_V1 = """
import functools

def plain(x, y=1, *, z=2):
    "plain v1"
    return ("v1", x, y, z)

plain.marker = "v1"

def deco(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return ("wrapped", fn(*args))
    return wrapper

@deco
def decorated():
    return "v1"

def make_counter():
    def counter():
        return "counter v1"
    return counter

def free():
    return "free v1"
"""

FUNCTIONS_V2 = """
import functools

def plain(x: int, y=10, *, z=20) -> tuple:
    "plain v2"
    return ("v2", x, y, z)

plain.marker = "v2"

def deco(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return ("wrapped", fn(*args))
    return wrapper

@deco
def decorated():
    return "v2"

def make_counter():
    def counter():
        return "counter v2"
    return counter

SUFFIX = "v2"

def _helper():
    return SUFFIX

def free():
    local = _helper
    def inner():
        return local()
    return "free " + inner()
"""

CLASSES_V1 = """
class Base:
    def greet(self):
        return "base v1"

class Widget(Base):
    LIMIT = 1
    OBSOLETE = "gone in v2"

    def __init__(self):
        self.size = 3

    def describe(self):
        return f"widget v1 size={self.size}"

    @staticmethod
    def kind():
        return "static v1"

    @classmethod
    def make(cls):
        return (cls.__name__, "classmethod v1")

    @property
    def area(self):
        return self.size * 1

    def greet(self):
        return "widget v1 / " + super().greet()

    class Inner:
        def ping(self):
            return "inner v1"

DEFAULT = Widget()
"""

CLASSES_V2 = """
class Base:
    def greet(self):
        return "base v2"

class Widget(Base):
    LIMIT = 2
    ADDED = "new in v2"

    def __init__(self):
        self.size = 3

    def describe(self):
        return f"widget v2 size={self.size}"

    @staticmethod
    def kind():
        return "static v2"

    @classmethod
    def make(cls):
        return (cls.__name__, "classmethod v2")

    @property
    def area(self):
        return self.size * 100

    def greet(self):
        return "widget v2 / " + super().greet()

    def fresh(self):
        return "fresh v2 / " + super().greet()

    class Inner:
        def ping(self):
            return "inner v2"

DEFAULT = Widget()
"""


def _load(tree: ModuleTree, name: str, source: str) -> ModuleType:
    tree.module(name, source)
    return importlib.import_module(name)


def _holder(tree: ModuleTree, source: str) -> ModuleType:
    """
    Another module that keeps references to the first one's objects.
    """
    return _load(tree, "holder", source)


class TestInPlaceFunctions:
    def test_references_held_elsewhere_run_the_new_code(
        self, tracker: versionload.Tracker, tree: ModuleTree, bytecode: bool
    ) -> None:
        """A from-import in another module and a stored callback keep their identity and run the new code."""
        module = _load(tree, "funcs", FUNCTIONS_V1)
        holder = _holder(tree, "from funcs import plain\nCALLBACKS = {'p': plain}\n")
        original = module.plain
        tree.module("funcs", FUNCTIONS_V2)
        tracker.reload(module, update="in-place")
        assert module.plain is original is holder.plain is holder.CALLBACKS["p"]
        assert ("v2", 0, 10, 20) == holder.plain(0)

    def test_metadata_follows_the_new_definition(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Defaults, keyword defaults, annotations, docstring and function attributes are the new ones."""
        module = _load(tree, "funcs", FUNCTIONS_V1)
        plain = module.plain
        tree.module("funcs", FUNCTIONS_V2)
        tracker.reload(module, update="in-place")
        assert (10,) == plain.__defaults__
        assert {"z": 20} == plain.__kwdefaults__
        assert {"x": "int", "return": "tuple"} == {
            k: getattr(v, "__name__", v) for k, v in plain.__annotations__.items()
        }
        assert "plain v2" == plain.__doc__
        assert "v2" == plain.marker

    def test_decorated_function_reaches_the_new_body(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A wrapper made by a decorator (a closure) calls the new wrapped function."""
        module = _load(tree, "funcs", FUNCTIONS_V1)
        decorated = module.decorated
        tree.module("funcs", FUNCTIONS_V2)
        tracker.reload(module, update="in-place")
        assert module.decorated is decorated
        assert ("wrapped", "v2") == decorated()

    def test_changed_free_variables_fall_back_to_rebind(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A closure whose free variables changed is rebound, and the event says so."""
        module = _load(tree, "funcs", FUNCTIONS_V1)
        decorated = module.decorated
        tree.module(
            "funcs",
            FUNCTIONS_V2.replace('return ("wrapped", fn(*args))', "return (tag, fn(*args))").replace(
                "def deco(fn):", "def deco(fn, tag='tagged'):"
            ),
        )
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        tracker.reload(module, update="in-place")
        assert module.decorated is not decorated
        assert ("wrapped", "v1") == decorated()
        patched = [e for e in events if isinstance(e, versionload.ModulePatched)]
        assert 1 == len(patched)
        assert ("decorated: free variables changed (fn -> fn, tag)",) == patched[0].rebound

    def test_new_nested_closures_work(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A function that gains a nested closure runs it against the module's globals."""
        module = _load(tree, "funcs", FUNCTIONS_V1)
        free = module.free
        tree.module("funcs", FUNCTIONS_V2)
        tracker.reload(module, update="in-place")
        assert "free v2" == free()

    def test_functions_made_before_by_a_factory_are_left_alone(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Closures made at run time are not in the namespace, so they keep their code (see stale())."""
        module = _load(tree, "funcs", FUNCTIONS_V1)
        counter = module.make_counter()
        tree.module("funcs", FUNCTIONS_V2)
        tracker.reload(module, update="in-place")
        assert "counter v1" == counter()
        assert "counter v2" == module.make_counter()()

    def test_patched_event_lists_what_was_updated(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """module.patched names every object updated in place, after module.reloaded."""
        module = _load(tree, "funcs", FUNCTIONS_V1)
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        tree.module("funcs", FUNCTIONS_V2)
        tracker.reload(module, update="in-place")
        assert ["module.reloaded", "module.patched", "changeset.applied"] == [e.event for e in events]
        patched = events[1]
        assert isinstance(patched, versionload.ModulePatched)
        assert {"plain", "deco", "decorated", "make_counter", "free"} <= set(patched.patched)
        assert () == patched.rebound
        assert 2 == patched.version


class TestInPlaceClasses:
    def test_existing_instances_see_new_methods(
        self, tracker: versionload.Tracker, tree: ModuleTree, bytecode: bool
    ) -> None:
        """An instance made before the reload uses the new methods, property and class attributes."""
        module = _load(tree, "shapes", CLASSES_V1)
        widget = module.Widget()
        tree.module("shapes", CLASSES_V2)
        tracker.reload(module, update="in-place")
        assert isinstance(widget, module.Widget)
        assert "widget v2 size=3" == widget.describe()
        assert 300 == widget.area
        assert 2 == widget.LIMIT
        assert "new in v2" == widget.ADDED
        assert not hasattr(widget, "OBSOLETE")

    def test_methods_fetched_before_run_new_code(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Bound methods, functions, static and class methods taken before the update run the new code."""
        module = _load(tree, "shapes", CLASSES_V1)
        widget = module.Widget()
        bound, unbound = widget.describe, module.Widget.describe
        static, klass = module.Widget.kind, module.Widget.make
        tree.module("shapes", CLASSES_V2)
        tracker.reload(module, update="in-place")
        assert "widget v2 size=3" == bound() == unbound(widget)
        assert "static v2" == static()
        assert ("Widget", "classmethod v2") == klass()

    def test_super_works_in_old_and_new_methods(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Zero-argument super() in updated and in added methods works on old instances."""
        module = _load(tree, "shapes", CLASSES_V1)
        widget = module.Widget()
        tree.module("shapes", CLASSES_V2)
        tracker.reload(module, update="in-place")
        assert "widget v2 / base v2" == widget.greet()
        assert "fresh v2 / base v2" == widget.fresh()

    def test_subclasses_elsewhere_see_the_new_base(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A subclass defined in another module inherits the updated methods."""
        module = _load(tree, "shapes", CLASSES_V1)
        holder = _holder(tree, "from shapes import Widget\nclass Special(Widget):\n    pass\n")
        tree.module("shapes", CLASSES_V2)
        tracker.reload(module, update="in-place")
        assert "widget v2 size=3" == holder.Special().describe()
        assert issubclass(holder.Special, module.Widget)

    def test_nested_classes_are_updated(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A class nested in a class keeps its identity and its instances see the new code."""
        module = _load(tree, "shapes", CLASSES_V1)
        inner = module.Widget.Inner()
        tree.module("shapes", CLASSES_V2)
        tracker.reload(module, update="in-place")
        assert type(inner) is module.Widget.Inner
        assert "inner v2" == inner.ping()

    def test_module_level_instances_belong_to_the_kept_class(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """An instance the new code makes at module level is an instance of the kept class."""
        module = _load(tree, "shapes", CLASSES_V1)
        widget_class = module.Widget
        tree.module("shapes", CLASSES_V2)
        tracker.reload(module, update="in-place")
        assert type(module.DEFAULT) is widget_class


def _fallback(
    tree: ModuleTree, tracker: versionload.Tracker, v1: str, v2: str
) -> tuple[Any, Any, tuple[str, ...]]:
    """
    Load ``v1``, reload ``v2`` in place; return the old and new ``Thing`` and the reported fallbacks.
    """
    module = _load(tree, "things", v1)
    old = module.Thing
    events: list[versionload.Event] = []
    tracker.subscribe(events.append)
    tree.module("things", v2)
    tracker.reload(module, update="in-place")
    patched = [e for e in events if isinstance(e, versionload.ModulePatched)]
    return old, module.Thing, patched[0].rebound


class TestInPlaceFallbacks:
    def test_changed_bases(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A class whose bases changed is rebound and reported."""
        old, new, rebound = _fallback(
            tree,
            tracker,
            "class Thing:\n    pass\n",
            "class Other:\n    pass\nclass Thing(Other):\n    pass\n",
        )
        assert old is not new
        assert ("Thing: bases changed",) == rebound

    def test_changed_slots(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A class whose __slots__ changed is rebound: its instances' layout cannot change."""
        old, new, rebound = _fallback(
            tree,
            tracker,
            "class Thing:\n    __slots__ = ('a',)\n",
            "class Thing:\n    __slots__ = ('a', 'b')\n",
        )
        assert old is not new
        assert ("Thing: __slots__ (instance layout) changed",) == rebound

    def test_same_slots_are_updated_in_place(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A slotted class with unchanged slots keeps its identity and its slot descriptors."""
        v1 = "class Thing:\n    __slots__ = ('a',)\n    def get(self):\n        return ('v1', self.a)\n"
        module = _load(tree, "things", v1)
        thing = module.Thing()
        thing.a = 5
        tree.module("things", v1.replace("'v1'", "'v2'"))
        tracker.reload(module, update="in-place")
        assert ("v2", 5) == thing.get()

    def test_custom_metaclass(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A class made by a custom metaclass is rebound: the metaclass may have side effects to redo."""
        source = "class Meta(type):\n    pass\nclass Thing(metaclass=Meta):\n    X = {}\n"
        old, new, rebound = _fallback(tree, tracker, source, source.replace("{}", "{2}"))
        assert old is not new
        assert "Thing: custom metaclass Meta" in rebound

    def test_method_that_starts_using_super_is_rebound_inside_the_kept_class(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A method gaining the __class__ free variable is replaced in the kept class; its super() works."""
        v1 = (
            "class Base:\n    def hi(self):\n        return 'base'\n"
            "class Thing(Base):\n    def hi(self):\n        return 'v1'\n"
        )
        module = _load(tree, "things", v1)
        thing, old_hi = module.Thing(), module.Thing.hi
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        tree.module("things", v1.replace("return 'v1'", "return 'v2+' + super().hi()"))
        tracker.reload(module, update="in-place")
        patched = next(e for e in events if isinstance(e, versionload.ModulePatched))
        assert ("Thing.hi: free variables changed (- -> __class__)",) == patched.rebound
        assert type(thing) is module.Thing
        assert "v2+base" == thing.hi()
        assert "v1" == old_hi(thing)

    def test_property_gaining_a_setter_is_replaced_inside_the_kept_class(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A property whose set of accessors changed is replaced as a whole; existing instances use it."""
        v1 = "class Thing:\n    _v = 1\n    @property\n    def v(self):\n        return self._v\n"
        v2 = v1 + "    @v.setter\n    def v(self, value):\n        self._v = value * 2\n"
        module = _load(tree, "things", v1)
        thing = module.Thing()
        tree.module("things", v2)
        tracker.reload(module, update="in-place")
        thing.v = 5
        assert 10 == thing.v

    def test_changed_metaclass(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A class that gains a metaclass is rebound: its type cannot change."""
        v2 = "class Meta(type):\n    pass\nclass Thing(metaclass=Meta):\n    pass\n"
        old, new, rebound = _fallback(tree, tracker, "class Thing:\n    pass\n", v2)
        assert old is not new
        assert ("Thing: metaclass changed (type -> Meta)",) == rebound

    def test_enum(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """An enum is rebound: its members are instances created with the class."""
        source = "import enum\nclass Thing(enum.Enum):\n    A = 1\n"
        old, new, rebound = _fallback(tree, tracker, source, source + "    B = 2\n")
        assert old is not new
        assert ("Thing: enum class: its members are instances created with the class",) == rebound

    def test_abc_classes_are_updated_and_abstract_methods_recomputed(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """An ABC is updated in place, and a method that stops being abstract makes it instantiable."""
        v1 = "import abc\nclass Thing(abc.ABC):\n    @abc.abstractmethod\n    def run(self): ...\n"
        v2 = "import abc\nclass Thing(abc.ABC):\n    def run(self):\n        return 'ran'\n"
        old, new, rebound = _fallback(tree, tracker, v1, v2)
        assert old is new
        assert () == rebound
        assert "ran" == old().run()

    def test_dataclass_with_the_same_fields_is_updated(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A dataclass whose fields did not change keeps its identity and gets new methods."""
        v1 = (
            "import dataclasses\n@dataclasses.dataclass\nclass Thing:\n    a: int\n"
            "    def get(self):\n        return ('v1', self.a)\n"
        )
        module = _load(tree, "things", v1)
        thing = module.Thing(4)
        tree.module("things", v1.replace("'v1'", "'v2'"))
        tracker.reload(module, update="in-place")
        assert ("v2", 4) == thing.get()
        assert thing == module.Thing(4)

    def test_dataclass_with_changed_fields(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A dataclass whose fields changed is rebound: old instances lack the new fields."""
        v1 = "import dataclasses\n@dataclasses.dataclass\nclass Thing:\n    a: int\n"
        old, new, rebound = _fallback(tree, tracker, v1, v1 + "    b: int = 0\n")
        assert old is not new
        assert ("Thing: dataclass fields changed",) == rebound

    def test_attrs_class_with_changed_fields(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """An attrs class whose fields changed is rebound."""
        v1 = "import attrs\n@attrs.define(slots=False)\nclass Thing:\n    a: int\n"
        old, new, rebound = _fallback(tree, tracker, v1, v1 + "    b: int = 0\n")
        assert old is not new
        assert ("Thing: attrs fields changed",) == rebound

    def test_attrs_class_with_the_same_fields_is_updated(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A slotted attrs class with unchanged fields keeps its identity and gets new methods."""
        v1 = (
            "import attrs\n@attrs.define\nclass Thing:\n    a: int\n"
            "    def get(self):\n        return ('v1', self.a)\n"
        )
        module = _load(tree, "things", v1)
        thing = module.Thing(4)
        tree.module("things", v1.replace("'v1'", "'v2'"))
        tracker.reload(module, update="in-place")
        assert ("v2", 4) == thing.get()

    def test_namedtuple_with_changed_fields(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A named tuple whose fields changed is rebound: existing tuples have the old length."""
        v1 = "import typing\nclass Thing(typing.NamedTuple):\n    a: int\n"
        old, new, rebound = _fallback(tree, tracker, v1, v1 + "    b: int = 0\n")
        assert old is not new
        assert ("Thing: namedtuple fields changed",) == rebound

    def test_other_values_are_rebound_silently(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Data (dicts, numbers) is rebound as in a plain reload and not reported."""
        _, new, rebound = _fallback(tree, tracker, "Thing = {'a': 1}\n", "Thing = {'a': 2}\n")
        assert {"a": 2} == new
        assert () == rebound


def _class_state(cls: type) -> dict[str, object]:
    return {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}


class TestRollbackAfterInPlace:
    def test_functions_run_their_old_code_again(
        self, tracker: versionload.Tracker, tree: ModuleTree, bytecode: bool
    ) -> None:
        """After rollback, every patched function (held anywhere) runs its old code with its old metadata."""
        module = _load(tree, "funcs", FUNCTIONS_V1)
        holder = _holder(tree, "from funcs import plain, decorated\n")
        plain, decorated = module.plain, module.decorated
        attributes = ("__code__", "__defaults__", "__kwdefaults__", "__annotations__", "__doc__", "__dict__")
        before = [getattr(plain, a) for a in attributes]
        wrapped = [cell.cell_contents for cell in decorated.__closure__]
        tree.module("funcs", FUNCTIONS_V2)
        tracker.reload(module, update="in-place")
        tracker.rollback(module)
        assert ("v1", 0, 1, 2) == holder.plain(0)
        assert ("wrapped", "v1") == holder.decorated()
        assert all(old is getattr(plain, a) for old, a in zip(before, attributes, strict=True))
        assert all(
            old is cell.cell_contents for old, cell in zip(wrapped, decorated.__closure__, strict=True)
        )
        assert "free v1" == module.free()

    def test_classes_get_exactly_their_old_attributes(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """After rollback, the class dict holds exactly the old objects, and instances behave as before."""
        module = _load(tree, "shapes", CLASSES_V1)
        widget = module.Widget()
        bound, static = widget.describe, module.Widget.kind
        states = {cls: _class_state(cls) for cls in (module.Base, module.Widget, module.Widget.Inner)}
        tree.module("shapes", CLASSES_V2)
        tracker.reload(module, update="in-place")
        tracker.rollback(module, to=1)
        for cls, state in states.items():
            assert state == _class_state(cls)
        assert "widget v1 size=3" == bound()
        assert "static v1" == static()
        assert 3 == widget.area
        assert "widget v1 / base v1" == widget.greet()
        assert not hasattr(widget, "fresh")
        assert "gone in v2" == widget.OBSOLETE

    def test_rolling_forward_restores_the_new_code(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Rolling back to the in-place version again brings its code back to the same objects."""
        module = _load(tree, "shapes", CLASSES_V1)
        widget = module.Widget()
        tree.module("shapes", CLASSES_V2)
        tracker.reload(module, update="in-place")
        tracker.rollback(module, to=1)
        tracker.rollback(module, to=2)
        assert "widget v2 size=3" == widget.describe()
        assert "fresh v2 / base v2" == widget.fresh()

    def test_several_in_place_versions(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """With three in-place versions, rolling back to each gives each one's code."""
        module = _load(tree, "funcs", FUNCTIONS_V1)
        plain = module.plain
        tree.module("funcs", FUNCTIONS_V2)
        tracker.reload(module, update="in-place")
        tree.module("funcs", FUNCTIONS_V2.replace('("v2", x, y, z)', '("v3", x, y, z)'))
        tracker.reload(module, update="in-place")
        results = {}
        for number in (1, 3, 2):
            tracker.rollback(module, to=number)
            results[number] = plain(0)[0]
        assert {1: "v1", 2: "v2", 3: "v3"} == results

    def test_failed_in_place_reload_is_undone(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """When the code after the classes fails, the classes already updated are put back."""
        module = _load(tree, "shapes", CLASSES_V1)
        widget = module.Widget()
        state = _class_state(module.Widget)
        tree.module("shapes", CLASSES_V2 + "\nraise RuntimeError('late failure')\n")
        with pytest.raises(versionload.ReloadError):
            tracker.reload(module, update="in-place")
        assert "widget v1 size=3" == widget.describe()
        assert state == _class_state(module.Widget)


class TestInPlaceCascade:
    def test_cascade_in_place_updates_every_module(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """With cascade and in-place together, dependents' own functions are updated in place too."""
        tree.write(
            {
                "lib/__init__.py": "",
                "lib/core.py": "def value():\n    return 1\n",
                "lib/user.py": "from lib.core import value\ndef doubled():\n    return value() * 2\n",
            }
        )
        user = importlib.import_module("lib.user")
        doubled = user.doubled
        tree.write(
            {
                "lib/core.py": "def value():\n    return 5\n",
                "lib/user.py": "from lib.core import value\ndef doubled():\n    return value() * 3\n",
            }
        )
        tracker.reload("lib.core", cascade=True, update="in-place")
        assert user.doubled is doubled
        assert 15 == doubled()
        assert sys.modules["lib.core"].value is user.value


class TestInPlaceHistory:
    def test_pruned_versions_do_not_break_rollback(self, tree: ModuleTree) -> None:
        """With max_versions=2, rolling back between the kept in-place versions restores their code."""
        tracker = versionload.Tracker(max_versions=2).install()
        try:
            module = _load(tree, "funcs", FUNCTIONS_V1)
            plain = module.plain
            for label in ("v2", "v3", "v4"):
                tree.module("funcs", FUNCTIONS_V2.replace('("v2", x, y, z)', f'("{label}", x, y, z)'))
                tracker.reload(module, update="in-place")
            assert (3, 4) == tuple(v.number for v in tracker.history(module))
            tracker.rollback(module, to=3)
            assert "v3" == plain(0)[0]
            tracker.rollback(module, to=4)
            assert "v4" == plain(0)[0]
        finally:
            tracker.uninstall()

    def test_plain_reload_after_in_place_then_rollback(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Rolling back over a plain reload to an in-place version restores that version's code."""
        module = _load(tree, "funcs", FUNCTIONS_V1)
        plain = module.plain
        tree.module("funcs", FUNCTIONS_V2)
        tracker.reload(module, update="in-place")
        tracker.reload(module)
        assert module.plain is not plain
        tracker.rollback(module, to=2)
        assert module.plain is plain
        assert "v2" == plain(0)[0]
        tracker.rollback(module, to=1)
        assert "v1" == plain(0)[0]


class TestInPlaceAliases:
    def test_alias_rebound_to_another_function_is_rebound(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """A name that pointed at one function and now at another never overwrites the first one's code."""
        v1 = "def a():\n    return 'a1'\ndef b():\n    return 'b1'\ncurrent = a\n"
        module = _load(tree, "aliases", v1)
        a, b = module.a, module.b
        tree.module(
            "aliases",
            v1.replace("'a1'", "'a2'").replace("'b1'", "'b2'").replace("current = a", "current = b"),
        )
        tracker.reload(module, update="in-place")
        assert (module.a, module.b) == (a, b)
        assert ("a2", "b2", "b2") == (a(), b(), module.current())

    def test_surviving_name_is_not_taken_over(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A function the new code no longer defines keeps its code even if its alias now names another."""
        module = _load(tree, "aliases", "def a():\n    return 'a1'\ncurrent = a\n")
        a = module.a
        tree.module("aliases", "def b():\n    return 'b2'\ncurrent = b\n")
        tracker.reload(module, update="in-place")
        assert module.a is a
        assert ("a1", "b2") == (a(), module.current())

    def test_two_names_for_one_function_stay_one_object(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """``g = f`` in both versions: both names keep the one old object, which runs the new code."""
        v1 = "def f():\n    return 1\ng = f\n"
        module = _load(tree, "aliases", v1)
        f = module.f
        tree.module("aliases", v1.replace("1", "2"))
        tracker.reload(module, update="in-place")
        assert module.f is module.g is f
        assert 2 == f()


class TestLedgerLifetime:
    def test_states_of_a_forgotten_module_are_released(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """Once a module's history ends, the kept states no longer hold its functions alive."""
        import gc
        import weakref

        module = _load(tree, "funcs", FUNCTIONS_V1)
        tree.module("funcs", FUNCTIONS_V2)
        tracker.reload(module, update="in-place")
        plain = weakref.ref(module.plain)
        tracker.forget(module)
        del sys.modules["funcs"], module
        other = _load(tree, "other_inplace", FUNCTIONS_V1)
        tracker.reload(other, update="in-place")  # any ledger update sweeps ended histories
        gc.collect()
        assert plain() is None


def _hammer(tracker: versionload.Tracker, tree: ModuleTree, rounds: int) -> None:
    """
    Threads keep calling a held function and method while the main thread alternates
    in-place reloads and rollbacks; every call must succeed with one of the labels.
    """
    import threading

    source = "def f():\n    return 'L{n}'\n\nclass C:\n    def m(self):\n        return 'L{n}'\n"
    module = _load(tree, "hammered", source.format(n=0))
    f, instance = module.f, module.C()
    stop = threading.Event()
    seen: set[str] = set()
    errors: list[BaseException] = []

    def call() -> None:
        while not stop.is_set():
            try:
                seen.add(f())
                seen.add(instance.m())
            except BaseException as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for n in range(1, rounds + 1):
            tree.module("hammered", source.format(n=n))
            tracker.reload(module, update="in-place")
            if n % 3 == 0:
                tracker.rollback(module)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert [] == errors
    assert seen <= {f"L{n}" for n in range(rounds + 1)}
    last = rounds if rounds % 3 else rounds - 1  # a round divisible by 3 ends rolled back
    assert f"L{last}" == f() == instance.m()


class TestInPlaceWhileRunning:
    def test_calls_in_other_threads_never_fail(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Held functions and methods called from other threads during in-place reloads keep working."""
        _hammer(tracker, tree, rounds=20)

    @pytest.mark.stress
    def test_calls_in_other_threads_never_fail_long(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """The same, for many more rounds."""
        _hammer(tracker, tree, rounds=150)
