"""
Changesets: every operation that changes modules is one recorded, undoable unit.
"""

from __future__ import annotations

import importlib
import importlib._bootstrap as _bootstrap  # type: ignore[import-not-found]
import json
import subprocess
import sys
import threading
from types import ModuleType
from typing import Any

import attrs
import pytest
from structlog.testing import capture_logs

import versionload
from versionload._live import control as _control
from versionload.plugins import PluginHost

from .distributions import Site
from .helpers import ModuleTree, wait_for

REQUESTS_LIKE = {
    "reqs/__init__.py": """
        from reqs import exceptions
        from reqs.api import get
    """,
    "reqs/exceptions.py": """
        class RequestException(Exception):
            pass

        class ConnectionError(RequestException):
            pass
    """,
    "reqs/api.py": """
        from reqs import exceptions

        def get(fail):
            if fail:
                raise exceptions.ConnectionError("down")
            return "ok"
    """,
    "client.py": """
        import reqs
        import reqs.exceptions
        from reqs.exceptions import RequestException

        def fetch():
            try:
                return reqs.get(True)
            except reqs.exceptions.ConnectionError:
                return "caught"

        def fetch_base():
            try:
                return reqs.get(True)
            except RequestException:
                return "caught base"
    """,
}

EDITED_EXCEPTIONS = """
class RequestException(Exception):
    retries = 0

class ConnectionError(RequestException):
    pass
"""


def _namespace(module: ModuleType) -> dict[str, object]:
    return dict(vars(module))


def _same(before: dict[str, object], module: ModuleType) -> bool:
    """
    Whether the module's namespace holds exactly the names and objects of ``before``.
    """
    now = vars(module)
    return before.keys() == now.keys() and all(now[key] is value for key, value in before.items())


def _load_requests_like(tree: ModuleTree) -> tuple[ModuleType, ...]:
    tree.write(REQUESTS_LIKE)
    client = importlib.import_module("client")
    return (sys.modules["reqs.exceptions"], sys.modules["reqs.api"], sys.modules["reqs"], client)


class TestRecording:
    """
    Which operations record a changeset, and what it holds.
    """

    def test_reload_records_one_changeset(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A reload records a "reload" changeset with the versions before and after, triggered by its name."""
        tree.module("cs_plain", "X = 1\n")
        import cs_plain

        tracker.reload(cs_plain)

        (changeset,) = tracker.changesets()
        assert (1, "reload", (versionload.Change("cs_plain", 1, 2),), "cs_plain", True) == (
            changeset.id,
            changeset.kind,
            changeset.changes,
            changeset.trigger,
            changeset.undoable,
        )
        assert changeset.created_at.tzinfo is not None

    def test_every_kind_of_change_records_one(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """reload, reload_many, cascade, in-place, rollback and importlib.reload each record one changeset."""
        tree.write({"cs_a.py": "def f():\n    return 1\n", "cs_b.py": "from cs_a import f\n"})
        import cs_a
        import cs_b

        tracker.reload(cs_a)
        tracker.reload_many([cs_a, cs_b], trigger="deploy 7")
        tracker.reload(cs_a, cascade=True)
        tracker.reload(cs_a, update="in-place")
        tracker.rollback(cs_a)
        importlib.reload(cs_b)

        assert [
            (1, "reload", ("cs_a",), "cs_a"),
            (2, "reload", ("cs_a", "cs_b"), "deploy 7"),
            (3, "reload", ("cs_a", "cs_b"), "cs_a"),
            (4, "reload", ("cs_a",), "cs_a"),
            (5, "rollback", ("cs_a",), "cs_a"),
            (6, "reload", ("cs_b",), "importlib.reload"),
        ] == [(c.id, c.kind, c.modules, c.trigger) for c in tracker.changesets()]
        assert versionload.Change("cs_a", 5, 4) == tracker.changesets()[4].changes[0]

    def test_failed_reload_records_nothing(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A reload whose code fails changes nothing, so it records no changeset."""
        path = tree.module("cs_fail", "X = 1\n")
        import cs_fail

        path.write_text("X = 2\n1 / 0\n")
        with pytest.raises(versionload.ReloadError):
            tracker.reload(cs_fail)

        assert () == tracker.changesets()

    def test_changesets_are_frozen(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A Changeset is a frozen value whose public path is versionload.Changeset."""
        tree.module("cs_frozen", "X = 1\n")
        tracker.reload(importlib.import_module("cs_frozen"))
        (changeset,) = tracker.changesets()

        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            changeset.id = 5  # type: ignore[misc]
        assert "versionload" == versionload.Changeset.__module__

    def test_the_list_is_bounded(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Only the newest MAX_CHANGESETS changesets are kept; ids keep going up."""
        tree.module("cs_many", "X = 1\n")
        module = importlib.import_module("cs_many")
        tracker.max_versions = 2
        for _ in range(versionload.MAX_CHANGESETS + 3):
            tracker.reload(module)

        ids = [c.id for c in tracker.changesets()]
        assert list(range(4, versionload.MAX_CHANGESETS + 4)) == ids
        with pytest.raises(versionload.ChangesetNotFoundError):
            tracker.undo(1)

    def test_plugin_reload_is_one_changeset(self, tracker: versionload.Tracker, tmp_path: Any) -> None:
        """A PluginHost reload of a plugin's modules is one changeset triggered by the plugin."""
        site = _site(tmp_path)
        site.install("greeter-dist", "1.0", GREETER, POINTS)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        site.upgrade("greeter-dist", "2.0", {**GREETER, "greeter/words.py": 'GREETING = "howdy"\n'}, POINTS)

        host.reload("greeter")

        (changeset,) = tracker.changesets()
        assert ("plugin:greeter", {"greeter", "greeter.core", "greeter.words"}) == (
            changeset.trigger,
            set(changeset.modules),
        )


GROUP = "cstest.plugins"
POINTS = {GROUP: {"greeter": "greeter:make"}}
GREETER = {
    "greeter/__init__.py": """
        from .core import Greeter
        from .words import GREETING

        def make():
            return Greeter(GREETING)
    """,
    "greeter/core.py": """
        class Greeter:
            def __init__(self, greeting):
                self.greeting = greeting

            def greet(self, name):
                return f"{self.greeting}, {name}"
    """,
    "greeter/words.py": 'GREETING = "hello"\n',
}


def _site(tmp_path: Any) -> Site:
    root = tmp_path / "site"
    root.mkdir()
    sys.path.insert(0, str(root))  # the autouse fixture restores sys.path
    return Site(root)


@pytest.mark.usefixtures("bytecode")
class TestUndo:
    """
    Tracker.undo and versionload.undo: a changeset undone as the unit it was applied as.
    """

    def test_undo_of_a_cascade_restores_except_clauses_everywhere(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """The requests case: undoing a cascade from the exceptions module restores every except clause."""
        modules = _load_requests_like(tree)
        exceptions, _, _, client = modules
        before = [_namespace(m) for m in modules]
        old_error = exceptions.ConnectionError
        tree.write({"reqs/exceptions.py": EDITED_EXCEPTIONS})
        tracker.reload(exceptions, cascade=True)
        assert exceptions.ConnectionError is not old_error
        assert ("caught", "caught base") == (client.fetch(), client.fetch_base())

        undo = tracker.undo()

        assert all(_same(namespace, m) for namespace, m in zip(before, modules, strict=True))
        assert exceptions.ConnectionError is old_error
        assert ("caught", "caught base") == (client.fetch(), client.fetch_base())
        assert ("undo", 1, "undo 1") == (undo.kind, undo.undoes, undo.trigger)
        assert [1] * 4 == [tracker.current(m).number for m in modules]

    def test_rolling_back_one_module_alone_breaks_what_undo_keeps(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """rollback(m, cascade=True) undoes the changeset that made m's version, not m alone."""
        modules = _load_requests_like(tree)
        exceptions, _, _, client = modules
        before = [_namespace(m) for m in modules]
        tree.write({"reqs/exceptions.py": EDITED_EXCEPTIONS})
        tracker.reload(exceptions, cascade=True)

        tracker.rollback(exceptions, cascade=True)

        assert all(_same(namespace, m) for namespace, m in zip(before, modules, strict=True))
        assert "caught" == client.fetch()
        assert "rollback:" not in tracker.changesets()[-1].trigger
        assert ("undo", "reqs.exceptions") == (
            tracker.changesets()[-1].kind,
            tracker.changesets()[-1].trigger,
        )

    def test_undo_of_a_plain_reload(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Undoing a reload puts the namespace back exactly, names added since removed."""
        path = tree.module("cs_undo_plain", "A = [1]\nB = 2\n")
        module = importlib.import_module("cs_undo_plain")
        before = _namespace(module)
        path.write_text("A = [2]\nC = 3\n")
        tracker.reload(module)

        versionload_undo = tracker.undo(1)

        assert _same(before, module)
        assert (versionload.Change("cs_undo_plain", 2, 1),) == versionload_undo.changes

    def test_undo_of_reload_many(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Undoing a reload_many returns every module of the group, newest first."""
        tree.write({"cs_m1.py": "X = [1]\n", "cs_m2.py": "Y = [1]\n"})
        first, second = importlib.import_module("cs_m1"), importlib.import_module("cs_m2")
        before = [_namespace(first), _namespace(second)]
        tree.write({"cs_m1.py": "X = [2]\n", "cs_m2.py": "Y = [2]\n"})
        tracker.reload_many([first, second])

        undo = tracker.undo()

        assert [True, True] == [_same(before[0], first), _same(before[1], second)]
        assert ("cs_m2", "cs_m1") == undo.modules

    def test_undo_of_an_in_place_update(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Undoing an in-place update gives the same function objects back their old code."""
        path = tree.module(
            "cs_inplace", "def f():\n    return 1\n\nclass K:\n    def m(self):\n        return 1\n"
        )
        module = importlib.import_module("cs_inplace")
        f, k = module.f, module.K
        old_code, old_method = f.__code__, vars(k)["m"]
        before = _namespace(module)
        path.write_text("def f():\n    return 2\n\nclass K:\n    def m(self):\n        return 2\n")
        tracker.reload(module, update="in-place")
        assert (2, 2, f) == (f(), k().m(), module.f)

        tracker.undo()

        assert _same(before, module)
        assert (1, 1) == (f(), k().m())
        assert old_code is f.__code__
        assert old_method is vars(k)["m"]

    def test_undo_of_a_migrated_reload(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Undoing a reload whose migration hook carried state brings back the namespace before it."""
        path = tree.module("cs_migrate", "STATE = {'hits': 3}\n")
        module = importlib.import_module("cs_migrate")
        before = _namespace(module)
        path.write_text(
            "STATE = {}\n\ndef __versionload_migrate__(previous):\n"
            "    STATE['hits'] = previous['STATE']['hits'] + 1\n"
        )
        tracker.reload(module)
        assert {"hits": 4} == module.STATE

        tracker.undo()

        assert _same(before, module)
        assert {"hits": 3} == module.STATE

    def test_undo_of_a_rollback(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Undoing a rollback returns the module to the version it was rolled back from."""
        path = tree.module("cs_rb", "X = [1]\n")
        module = importlib.import_module("cs_rb")
        path.write_text("X = [2]\n")
        tracker.reload(module)
        reloaded = _namespace(module)
        tracker.rollback(module)

        tracker.undo()

        assert _same(reloaded, module)
        assert 2 == tracker.current(module).number

    def test_undo_of_a_plugin_reload(self, tracker: versionload.Tracker, tmp_path: Any) -> None:
        """Undoing a PluginHost reload returns every module of the plugin to its namespace before."""
        site = _site(tmp_path)
        site.install("greeter-dist", "1.0", GREETER, POINTS)
        host = PluginHost(GROUP, tracker=tracker)
        plugin = host.load_all()["greeter"]
        names = plugin.modules
        before = {name: _namespace(sys.modules[name]) for name in names}
        site.upgrade("greeter-dist", "2.0", {**GREETER, "greeter/words.py": 'GREETING = "howdy"\n'}, POINTS)
        host.reload("greeter")
        assert "howdy, ann" == host["greeter"].obj().greet("ann")

        tracker.undo()

        assert {name: True for name in names} == {
            name: _same(namespace, sys.modules[name]) for name, namespace in before.items()
        }
        assert "hello, ann" == sys.modules["greeter"].make().greet("ann")

    def test_default_undo_takes_the_latest_not_undone(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """undo() takes the latest changeset not itself undone: after an undo, the undo (a redo)."""
        path = tree.module("cs_walk", "X = [1]\n")
        module = importlib.import_module("cs_walk")
        first = _namespace(module)
        path.write_text("X = [2]\n")
        tracker.reload(module)
        path.write_text("X = [3]\n")
        tracker.reload(module)

        third = _namespace(module)

        assert 2 == tracker.undo().undoes
        assert 3 == tracker.undo().undoes  # the undo itself: X is [3] again
        assert _same(third, module)
        assert 1 == tracker.undo(1).undoes
        assert _same(first, module)

    def test_an_undo_can_be_undone(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """Undoing an "undo" changeset re-applies what it undid."""
        path = tree.module("cs_redo", "X = [1]\n")
        module = importlib.import_module("cs_redo")
        path.write_text("X = [2]\n")
        tracker.reload(module)
        after = _namespace(module)
        undo = tracker.undo()

        tracker.undo(undo.id)

        assert _same(after, module)

    def test_facade_functions(self, hook: versionload.Tracker, tree: ModuleTree) -> None:
        """versionload.changesets() and versionload.undo() use the default tracker."""
        path = tree.module("cs_facade", "X = [1]\n")
        module = importlib.import_module("cs_facade")
        before = _namespace(module)
        path.write_text("X = [2]\n")
        versionload.reload(module)

        versionload.undo()

        assert _same(before, module)
        assert ["reload", "undo"] == [c.kind for c in versionload.changesets()]


class TestUndoRefused:
    """
    What undo refuses, with a typed error and nothing changed.
    """

    def _reloaded(self, tracker: versionload.Tracker, tree: ModuleTree) -> ModuleType:
        path = tree.module("cs_refused", "X = [1]\n")
        module = importlib.import_module("cs_refused")
        path.write_text("X = [2]\n")
        tracker.reload(module)
        return module

    @pytest.mark.parametrize("bad", ["1", 0, -1, True, 1.0])
    def test_bad_ids(self, tracker: versionload.Tracker, tree: ModuleTree, bad: object) -> None:
        """An id that is not an int >= 1 raises InvalidArgumentError (a TypeError) and changes nothing."""
        module = self._reloaded(tracker, tree)
        before, listed = _namespace(module), tracker.changesets()

        with pytest.raises(versionload.InvalidArgumentError, match="changeset must be a changeset id"):
            tracker.undo(bad)  # type: ignore[arg-type]

        assert (True, listed) == (_same(before, module), tracker.changesets())

    def test_unknown_id(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """An id never recorded raises ChangesetNotFoundError, a LookupError naming the ids kept."""
        module = self._reloaded(tracker, tree)
        before = _namespace(module)

        with pytest.raises(LookupError, match=r"no changeset 9 \(changesets kept: 1\)") as raised:
            tracker.undo(9)

        assert isinstance(raised.value, versionload.ChangesetNotFoundError)
        assert (9, True) == (raised.value.changeset, _same(before, module))

    def test_undone_twice(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A changeset already undone cannot be undone again."""
        module = self._reloaded(tracker, tree)
        tracker.undo(1)
        before, listed = _namespace(module), tracker.changesets()

        with pytest.raises(versionload.ChangesetNotUndoableError, match="undone by changeset 2"):
            tracker.undo(1)

        assert (True, listed) == (_same(before, module), tracker.changesets())
        assert (2, False) == (listed[0].undone_by, listed[0].undoable)

    def test_pruned_versions(self, tree: ModuleTree) -> None:
        """A changeset whose version before was pruned says so and undo refuses it."""
        tracker = versionload.Tracker(max_versions=2).install()
        try:
            path = tree.module("cs_pruned", "X = [1]\n")
            module = importlib.import_module("cs_pruned")
            path.write_text("X = [2]\n")
            tracker.reload(module)
            path.write_text("X = [3]\n")
            tracker.reload(module)
            before = _namespace(module)

            with pytest.raises(
                versionload.ChangesetNotUndoableError, match="version 1 of 'cs_pruned' was pruned"
            ):
                tracker.undo(1)

            assert [False, True] == [c.undoable for c in tracker.changesets()]
            assert (True, 3) == (_same(before, module), tracker.current(module).number)
        finally:
            tracker.uninstall()

    def test_rollback_cascade_with_a_version(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """rollback(cascade=True) with a version number is refused before anything changes."""
        module = self._reloaded(tracker, tree)
        before = _namespace(module)

        with pytest.raises(versionload.InvalidArgumentError, match="pass no 'to'"):
            tracker.rollback(module, 1, cascade=True)

        assert (True, 1) == (_same(before, module), len(tracker.changesets()))

    def test_undo_waits_for_serving_sections(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """An undo waits at the drain gate: with a section held elsewhere it times out, changing nothing."""
        module = self._reloaded(tracker, tree)
        before = _namespace(module)
        tracker.drain_timeout = 0.2
        entered, leave = threading.Event(), threading.Event()

        def serve() -> None:
            with tracker.serving():
                entered.set()
                leave.wait(10)

        server = threading.Thread(target=serve)
        server.start()
        try:
            assert entered.wait(10)
            with pytest.raises(versionload.DrainTimeoutError):
                tracker.undo()
        finally:
            leave.set()
            server.join(10)

        assert (True, 1) == (_same(before, module), len(tracker.changesets()))


class TestEvents:
    """
    changeset.applied / changeset.undone, and changeset_id on the per-module events.
    """

    def test_events_of_an_undone_cascade(self, tracker: versionload.Tracker, tree: ModuleTree) -> None:
        """A cascade and its undo log these exact changeset events; per-module events carry the id."""
        (exceptions, *_) = _load_requests_like(tree)
        tree.write({"reqs/exceptions.py": EDITED_EXCEPTIONS})
        with capture_logs() as logs:
            tracker.reload(exceptions, cascade=True)
            tracker.undo(trigger="ops")
        modules = ["reqs.exceptions", "reqs.api", "reqs", "client"]

        assert [
            {
                "event": "changeset.applied",
                "log_level": "info",
                "module": "reqs.exceptions",
                "reason": "requested",
                "changeset_id": 1,
                "kind": "reload",
                "modules": modules,
                "trigger": "reqs.exceptions",
            },
            {
                "event": "changeset.applied",
                "log_level": "info",
                "module": "client",
                "reason": "undo",
                "changeset_id": 2,
                "kind": "undo",
                "modules": modules[::-1],
                "trigger": "ops",
            },
            {
                "event": "changeset.undone",
                "log_level": "warning",
                "module": "reqs.exceptions",
                "reason": "undo",
                "changeset_id": 1,
                "kind": "reload",
                "modules": modules,
                "trigger": "ops",
                "undone_by": 2,
            },
        ] == [entry for entry in logs if entry["event"].startswith("changeset.")]
        assert [
            ("module.reloaded", 1),
            ("module.reloaded", 1),
            ("module.reloaded", 1),
            ("module.reloaded", 1),
            ("cascade.reloaded", 1),
            ("module.rolled_back", 2),
            ("module.rolled_back", 2),
            ("module.rolled_back", 2),
            ("module.rolled_back", 2),
        ] == [
            (entry["event"], entry["changeset_id"])
            for entry in logs
            if "version" in entry or "versions" in entry
        ]


# A module class whose attribute assignments go through a hook of ``cs_hook`` (a real
# module the tests write): versionload calls it when an undo gives the module its
# class before back, inside the undo's critical section.
_HOOKED_CLASS = """
import sys
import types

import cs_hook


class Hooked(types.ModuleType):
    def __setattr__(self, key, value):
        cs_hook.on_setattr(self.__name__, key)
        super().__setattr__(key, value)


X = [{value}]
sys.modules[__name__].__class__ = Hooked
"""

_HOOK = """
def on_setattr(module, key):
    pass
"""


def _blocked_on(name: str) -> int:
    """
    How many threads wait for the import system's lock of module ``name`` (CPython 3.10
    to 3.13: one lock per waiting thread up to 3.11, a list of them from 3.12).
    """
    waiting = []
    for held in list(_bootstrap._blocking_on.values()):
        waiting.extend(list(held) if isinstance(held, list) else [held])
    return sum(1 for lock in waiting if getattr(lock, "name", None) == name)


def _hooked_pair(tracker: versionload.Tracker, tree: ModuleTree) -> tuple[ModuleType, ModuleType, ModuleType]:
    """
    cs_ra and cs_rb reloaded as one changeset (1) after which cs_ra has the class Hooked.
    """
    tree.write({"cs_hook.py": _HOOK, "cs_ra.py": "X = [1]\n", "cs_rb.py": "Y = [1]\n"})
    hook = importlib.import_module("cs_hook")
    first, second = importlib.import_module("cs_ra"), importlib.import_module("cs_rb")
    tree.write({"cs_ra.py": _HOOKED_CLASS.format(value=2), "cs_rb.py": "Y = [2]\n"})
    tracker.reload_many([first, second])
    assert "Hooked" == type(first).__name__
    return hook, first, second


def _threads(count: int, work: Any) -> tuple[list[object], list[BaseException]]:
    """
    Run ``work()`` in ``count`` threads started together; their results and errors.
    """
    barrier = threading.Barrier(count)
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(work())
        except BaseException as error:  # noqa: BLE001 - collected and asserted on
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return results, errors


@pytest.mark.timeout(60)
class TestUndoConcurrently:
    """
    Undo from several threads, and undo racing reloads: the check that a changeset can
    be undone and the undo itself are one critical section.
    """

    THREADS = 8

    def test_the_same_undo_in_eight_threads_succeeds_once(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """8 threads undo changeset 1 at once: one undoes it, 7 raise ChangesetNotUndoableError."""
        hook, first, second = _hooked_pair(tracker, tree)
        waited: list[int] = []

        def on_setattr(module: str, key: str) -> None:
            # The first undo to restore cs_ra holds its lock until every other thread
            # waits for that lock: each has looked at the changeset by then if it
            # looks before taking the locks (the race), none has if it looks after.
            if module == "cs_ra" and key == "__class__":
                waited.append(wait_for(lambda: _blocked_on("cs_ra") == self.THREADS - 1, timeout=10))

        hook.on_setattr = on_setattr

        results, errors = _threads(self.THREADS, lambda: tracker.undo(1))

        assert [True] == waited
        assert 1 == len(results), errors
        assert [versionload.ChangesetNotUndoableError] * (self.THREADS - 1) == [type(e) for e in errors]
        assert all("undone by changeset 2" in str(error) for error in errors)
        assert [("reload", None), ("undo", 1)] == [(c.kind, c.undoes) for c in tracker.changesets()]
        assert ([1], [1]) == (first.X, second.Y)
        assert (ModuleType, 1, 1) == (
            type(first),
            tracker.current(first).number,
            tracker.current(second).number,
        )

    def test_an_undo_racing_a_reload_of_its_module(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """
        A reload of a module that an undo is restoring waits for the undo: it runs after
        it, on the module as the undo left it, and the undo records what it replaced.
        """
        hook, first, second = _hooked_pair(tracker, tree)
        entered, go = threading.Event(), threading.Event()

        def on_setattr(module: str, key: str) -> None:
            if module == "cs_ra" and key == "__class__":
                entered.set()
                go.wait(10)

        hook.on_setattr = on_setattr
        tree.write({"cs_ra.py": "X = [3]\n"})
        undoes = threading.Thread(target=tracker.undo, args=(1,))
        undoes.start()
        try:
            assert entered.wait(10)
            reloads = threading.Thread(target=tracker.reload, args=("cs_ra",))
            reloads.start()
            assert wait_for(lambda: _blocked_on("cs_ra") == 1)
        finally:
            go.set()
            undoes.join(10)
        reloads.join(10)

        assert [
            ("reload", (("cs_ra", 1, 2), ("cs_rb", 1, 2))),
            ("undo", (("cs_rb", 2, 1), ("cs_ra", 2, 1))),
            ("reload", (("cs_ra", 1, 3),)),
        ] == [(c.kind, tuple(attrs.astuple(change) for change in c.changes)) for c in tracker.changesets()]
        assert ([3], [1], ModuleType) == (first.X, second.Y, type(first))

    def test_undo_of_the_latest_while_a_newer_changeset_is_recorded(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """
        undo() found changeset 1 the latest, but a reload recorded changeset 2 before it
        could start: it undoes changeset 2, the latest when it does, not 1 under it.
        """
        path = tree.module("cs_latest", "X = [1]\n")
        module = importlib.import_module("cs_latest")
        path.write_text("X = [2]\n")
        tracker.reload(module)
        second = _namespace(module)
        path.write_text("X = [3]\n")
        held, release = threading.Event(), threading.Event()
        undone: list[versionload.Changeset] = []

        def serve() -> None:
            # The serving section holds the undo at the gate (after it found the latest);
            # the section's own reload passes, as a change made inside a section does.
            with tracker.serving():
                held.set()
                assert wait_for(lambda: tracker._gate._waiting == 1)
                tracker.reload(module)
                release.wait(10)

        server = threading.Thread(target=serve)
        server.start()
        try:
            assert held.wait(10)
            undoes = threading.Thread(target=lambda: undone.append(tracker.undo()))
            undoes.start()
            assert wait_for(lambda: len(tracker.changesets()) == 2)
        finally:
            release.set()
            server.join(10)
        undoes.join(10)

        assert [2] == [each.undoes for each in undone]
        assert _same(second, module)
        assert (2, [None, 3, None]) == (
            tracker.current(module).number,
            [c.undone_by for c in tracker.changesets()],
        )


class TestUndoFailsHalfway:
    """
    An undo of several modules that fails in one of them puts every module back as it
    was, records nothing, and says so with a ChangesetNotUndoableError.
    """

    # A module class that refuses attribute assignments (a "constants module") while
    # cs_guard.ON is true: giving the module its class before back is refused too.
    READ_ONLY = """
        import sys
        import types

        import cs_guard


        class ReadOnly(types.ModuleType):
            def __setattr__(self, key, value):
                if cs_guard.ON:
                    raise AttributeError(f"{{self.__name__}} is read-only, cannot set {{key!r}}")
                super().__setattr__(key, value)


        X = [{value}]
        sys.modules[__name__].__class__ = ReadOnly
    """

    def test_a_module_class_refusing_its_restore(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """The last module of the undo refuses: the first, restored already, is put back."""
        tree.write({"cs_guard.py": "ON = True\n", "cs_fa.py": "X = [1]\n", "cs_fb.py": "Y = [1]\n"})
        guard = importlib.import_module("cs_guard")
        first, second = importlib.import_module("cs_fa"), importlib.import_module("cs_fb")
        originals = [_namespace(first), _namespace(second)]
        tree.write({"cs_fa.py": self.READ_ONLY.format(value=2), "cs_fb.py": "Y = [2]\n"})
        tracker.reload_many([first, second])  # undone newest first: cs_fb, then cs_fa
        read_only = type(first)
        before = [_namespace(first), _namespace(second)]
        listed = tracker.changesets()

        with pytest.raises(versionload.ChangesetNotUndoableError) as raised:
            tracker.undo(1)

        assert ("cs_fa", AttributeError) == (raised.value.module, type(raised.value.__cause__))
        assert "every module is as it was before the undo" in str(raised.value)
        assert [True, True] == [_same(before[0], first), _same(before[1], second)]
        assert (read_only, ModuleType) == (type(first), type(second))
        assert [2, 2] == [tracker.current(first).number, tracker.current(second).number]
        assert listed == tracker.changesets()
        assert [True] == [c.undoable for c in tracker.changesets()]

        guard.ON = False  # the class lets itself be replaced now: the changeset can be undone
        tracker.undo(1)

        assert [True, True] == [_same(originals[0], first), _same(originals[1], second)]
        assert (ModuleType, ModuleType) == (type(first), type(second))
        assert [("reload", None), ("undo", 1)] == [(c.kind, c.undoes) for c in tracker.changesets()]

    def test_a_module_given_its_read_only_class_back_is_put_back(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """
        The undo gives cs_pa its read-only class back, then cs_pb refuses: putting cs_pa
        back is not refused by that class (nor is any module left half put back).
        """
        tree.write({"cs_guard.py": "ON = False\n", "cs_pa.py": self.READ_ONLY.format(value=1)})
        guard = importlib.import_module("cs_guard")
        tree.write({"cs_pb.py": "Y = [1]\n"})
        first, second = importlib.import_module("cs_pa"), importlib.import_module("cs_pb")
        tree.write(
            {
                "cs_pa.py": _PLAIN_AGAIN,
                "cs_pb.py": self.READ_ONLY.format(value=2),
            }
        )
        tracker.reload_many([second, first])  # undone newest first: cs_pa, then cs_pb
        assert (ModuleType, "ReadOnly") == (type(first), type(second).__name__)
        before = [_namespace(first), _namespace(second)]
        read_only = type(second)
        guard.ON = True

        with pytest.raises(versionload.ChangesetNotUndoableError) as raised:
            tracker.undo(1)

        assert "cs_pb" == raised.value.module
        assert [True, True] == [_same(before[0], first), _same(before[1], second)]
        assert (ModuleType, read_only) == (type(first), type(second))
        assert [2, 2] == [tracker.current(first).number, tracker.current(second).number]
        assert [("reload", True)] == [(c.kind, c.undoable) for c in tracker.changesets()]

    def test_objects_updated_in_place_are_put_back_too(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """
        cs_ia's function and class, updated in place, got their code before back when
        cs_ib refuses: they run the code of the version they had before the undo again.
        """
        tree.write({"cs_guard.py": "ON = False\n", "cs_ia.py": _IA.format(1), "cs_ib.py": "Y = [1]\n"})
        guard = importlib.import_module("cs_guard")
        first, second = importlib.import_module("cs_ia"), importlib.import_module("cs_ib")
        rules, version = first.Rules, first.version
        tree.write({"cs_ia.py": _IA.format(2), "cs_ib.py": self.READ_ONLY.format(value=2)})
        tracker.reload_many([second, first], update="in-place")  # undone newest first: cs_ia, cs_ib
        assert (rules, version, 20, 2) == (first.Rules, first.version, rules().limit(), version())
        before = [_namespace(first), _namespace(second)]
        codes = [version.__code__, vars(rules)["limit"].__code__]
        guard.ON = True

        with pytest.raises(versionload.ChangesetNotUndoableError) as raised:
            tracker.undo(1)

        assert ("cs_ib", AttributeError) == (raised.value.module, type(raised.value.__cause__))
        assert [True, True] == [_same(before[0], first), _same(before[1], second)]
        assert (20, 2) == (rules().limit(), version())
        assert codes == [version.__code__, vars(rules)["limit"].__code__]
        assert [2, 2] == [tracker.current(first).number, tracker.current(second).number]
        assert [("reload", True)] == [(c.kind, c.undoable) for c in tracker.changesets()]

        guard.ON = False
        tracker.undo(1)

        assert (10, 1) == (rules().limit(), version())

    def test_objects_updated_in_place_are_put_back_as_they_were(
        self, tracker: versionload.Tracker, tree: ModuleTree
    ) -> None:
        """
        Put back as they were, also when that is not what any version recorded for them:
        here the functions run version 1's code under version 4 (rolled back, then
        reloaded plainly), and the failed undo had given them version 2's.
        """
        tree.write({"cs_guard.py": "ON = False\n", "cs_ia.py": _IA.format(1), "cs_ib.py": "Y = [1]\n"})
        guard = importlib.import_module("cs_guard")
        first, second = importlib.import_module("cs_ia"), importlib.import_module("cs_ib")
        version = first.version
        tree.write({"cs_ia.py": _IA.format(2)})
        tracker.reload(first, update="in-place")  # version's code is version 2's
        tree.write({"cs_ia.py": _IA.format(3), "cs_ib.py": self.READ_ONLY.format(value=2)})
        tracker.reload_many([second, first])  # undone newest first: cs_ia, cs_ib
        undone = tracker.changesets()[-1].id
        tracker.rollback(first, to=1)  # version's code is version 1's again
        tracker.reload(first)  # version 4: new objects; the old ones keep their state
        assert (1, [4, 2]) == (version(), [tracker.current(first).number, tracker.current(second).number])
        code = version.__code__
        guard.ON = True

        with pytest.raises(versionload.ChangesetNotUndoableError, match="restoring 'cs_ib' failed"):
            tracker.undo(undone)

        assert (1, code) == (version(), version.__code__)
        assert [4, 2] == [tracker.current(first).number, tracker.current(second).number]


# Gives the module back the plain module class (allowed while cs_guard.ON is false).
_PLAIN_AGAIN = """
import sys
import types

X = [2]
sys.modules[__name__].__class__ = types.ModuleType
"""

_IA = """
class Rules:
    LIMIT = {0}

    def limit(self):
        return self.LIMIT * 10


def version():
    return {0}
"""


class TestControlChannel:
    """
    The control channel's changes / undo requests, and `versionload changes` / `versionload undo`.
    """

    def test_changes_and_undo_over_the_cli(
        self, tracker: versionload.Tracker, tree: ModuleTree, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`versionload changes` lists the changesets; `versionload undo ID` undoes one, for the channel."""
        runtime = tmp_path / "rt"
        runtime.mkdir(mode=0o700)
        monkeypatch.setenv(_control.RUNTIME_DIR_ENV, str(runtime))
        path = tree.module("cs_remote", "X = [1]\n")
        module = importlib.import_module("cs_remote")
        before = _namespace(module)
        path.write_text("X = [2]\n")
        tracker.reload(module)
        server = _control.ControlServer(tracker, (str(tree.root),)).start()
        try:
            assert server.path is not None
            listed = _cli("changes", "--socket", str(server.path), "--json")
            refused = _cli("undo", "--socket", str(server.path), "7")
            undone = _cli("undo", "--socket", str(server.path), "1")
            text = _cli("changes", "--socket", str(server.path))
        finally:
            server.stop()

        assert 0 == listed.returncode, listed.stderr
        [entry] = json.loads(listed.stdout)
        assert (1, "reload", [{"module": "cs_remote", "before": 1, "after": 2}], True) == (
            entry["id"],
            entry["kind"],
            entry["changes"],
            entry["undoable"],
        )
        assert (5, True) == (refused.returncode, "no changeset 7 (changesets kept: 1)" in refused.stderr)
        assert 0 == undone.returncode, undone.stderr
        assert "undid changeset 1 as changeset 2: cs_remote 2 -> 1" in undone.stdout
        assert "undone by 2" in text.stdout
        assert _same(before, module)
        assert "control" == tracker.changesets()[-1].trigger


def _cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "versionload", *arguments], capture_output=True, text=True, timeout=60
    )
