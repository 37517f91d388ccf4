"""
The drain gate: `serving()` sections, and changes that wait for them to end.
"""

from __future__ import annotations

import asyncio
import math
import os
import pickle
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterator

import pytest

import versionload
from versionload.testing import capture_events

from .helpers import ModuleTree, wait_for

# A module whose execution takes a while between its two values, so that a reader
# that is not held back would see the first one new and the second one old.
_PAIR = """
import time

A = {value}
time.sleep({pause})
B = {value}


def pair():
    return (A, B, helper())


def helper():
    return {value}
"""


def _write_pair(tree: ModuleTree, name: str, value: int, pause: float = 0.0) -> None:
    tree.module(name, _PAIR.format(value=value, pause=pause))


def _waiting(tracker: versionload.Tracker, count: int = 1) -> bool:
    """
    Whether ``count`` changes wait at ``tracker``'s gate.
    """
    return bool(tracker._gate._waiting == count)


class _Holder:
    """
    A thread that holds a section of ``tracker`` until released.
    """

    def __init__(self, tracker: versionload.Tracker) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(tracker,), daemon=True)
        self.thread.start()
        assert self.entered.wait(10)

    def _run(self, tracker: versionload.Tracker) -> None:
        with tracker.serving():
            self.entered.set()
            self.release.wait(10)

    def stop(self) -> None:
        self.release.set()
        self.thread.join(10)


@pytest.fixture(name="holder")
def _holder(tracker: versionload.Tracker) -> Iterator[Callable[[], _Holder]]:
    """
    Start threads that hold a section of ``tracker``; all released at the end.
    """
    holders: list[_Holder] = []

    def start() -> _Holder:
        holders.append(_Holder(tracker))
        return holders[-1]

    yield start
    for each in holders:
        each.stop()


def _in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """
    Run ``work`` in a thread; its result or exception lands in the returned list.
    """
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


class TestServing:
    """
    `versionload.serving()` and `Tracker.serving()` as context manager, decorator and async context manager.
    """

    def test_context_manager_counts_one_section_per_thread(self, tracker: versionload.Tracker) -> None:
        """
        Nested sections of one thread count once, and all are gone afterwards.
        """
        seen = []
        with tracker.serving():
            seen.append(tracker.sections_in_flight)
            with tracker.serving():
                seen.append(tracker.sections_in_flight)
        seen.append(tracker.sections_in_flight)

        assert [1, 1, 0] == seen

    def test_section_ends_when_the_block_raises(self, tracker: versionload.Tracker) -> None:
        """
        An exception leaving a section ends it.
        """
        with pytest.raises(KeyError), tracker.serving():
            raise KeyError("x")

        assert 0 == tracker.sections_in_flight

    def test_decorator(self, tracker: versionload.Tracker) -> None:
        """
        A decorated function runs in a section and keeps its name.
        """

        @tracker.serving()
        def handler(x: int) -> tuple[int, int]:
            return x, tracker.sections_in_flight

        assert ((3, 1), "handler", 0) == (handler(3), handler.__name__, tracker.sections_in_flight)

    def test_async_context_manager_and_decorator(self, tracker: versionload.Tracker) -> None:
        """
        ``async with`` and a decorated coroutine function are sections, nested per task.
        """

        @tracker.serving()
        async def inner() -> int:
            return tracker.sections_in_flight

        async def main() -> list[int]:
            async with tracker.serving():
                return [tracker.sections_in_flight, await inner()]

        assert ([1, 1], 0) == (asyncio.run(main()), tracker.sections_in_flight)

    def test_facade_uses_the_default_tracker(self) -> None:
        """
        ``versionload.serving()`` is the default tracker's section.
        """
        with versionload.serving():
            inside = versionload.default_tracker().sections_in_flight

        assert (1, versionload.default_tracker().serving()) == (inside, versionload.serving())

    def test_decorating_a_non_callable_is_refused(self, tracker: versionload.Tracker) -> None:
        """
        ``serving()(42)`` raises `InvalidArgumentError`.
        """
        with pytest.raises(versionload.InvalidArgumentError):
            tracker.serving()(42)  # type: ignore[type-var]


class TestUnbalancedSections:
    """
    Leaving a section that was never entered is an error, and the gate still works afterwards.
    """

    @pytest.mark.parametrize("entered_before", [False, True])
    def test_exit_without_enter(
        self, tree: ModuleTree, tracker: versionload.Tracker, entered_before: bool
    ) -> None:
        """A stray __exit__ raises ServingSectionError; the next section still holds reloads back."""
        _write_pair(tree, "gt_stray", 0, pause=0.0)
        import gt_stray

        section = tracker.serving()
        if entered_before:
            with section:
                pass
        with pytest.raises(versionload.ServingSectionError):
            section.__exit__(None, None, None)
        tracker.drain_timeout = 0.1
        outcome: list[BaseException | None] = []

        def reload() -> None:
            try:
                tracker.reload(gt_stray)
            except versionload.VersionLoadError as error:
                outcome.append(error)
            else:
                outcome.append(None)

        with section:
            other = threading.Thread(target=reload)
            other.start()
            other.join(10)

        assert ([versionload.DrainTimeoutError], 0) == (
            [type(each) for each in outcome],
            tracker.sections_in_flight,
        )

    def test_async_exit_without_enter(self, tracker: versionload.Tracker) -> None:
        """A stray __aexit__ raises ServingSectionError too."""

        async def stray() -> None:
            await tracker.serving().__aexit__(None, None, None)

        with pytest.raises(versionload.ServingSectionError):
            asyncio.run(stray())


class TestDrain:
    """
    Changes wait until the sections in flight have ended, and hold new ones back.
    """

    def test_reload_waits_for_a_section_in_another_thread(
        self, tree: ModuleTree, tracker: versionload.Tracker, holder: Callable[[], _Holder], bytecode: bool
    ) -> None:
        """
        A reload is applied only once the other thread's section has ended.
        """
        _write_pair(tree, "gt_wait", 1)
        import gt_wait

        held = holder()
        _write_pair(tree, "gt_wait", 2)
        thread, outcome = _in_thread(lambda: tracker.reload(gt_wait))
        assert wait_for(lambda: _waiting(tracker))
        during = gt_wait.pair()
        held.stop()
        thread.join(10)

        assert ((1, 1, 1), [gt_wait], (2, 2, 2)) == (during, outcome, gt_wait.pair())

    def test_new_sections_wait_behind_a_waiting_reload(
        self, tree: ModuleTree, tracker: versionload.Tracker, holder: Callable[[], _Holder]
    ) -> None:
        """
        A section started while a reload waits runs after the reload (the reload is not starved).
        """
        _write_pair(tree, "gt_order", 1)
        import gt_order

        held = holder()
        _write_pair(tree, "gt_order", 2)
        reloading, _ = _in_thread(lambda: tracker.reload(gt_order))
        assert wait_for(lambda: _waiting(tracker))

        def late() -> tuple[int, int, int]:
            with tracker.serving():
                return gt_order.pair()  # type: ignore[no-any-return]

        reader, seen = _in_thread(late)
        held.stop()
        reloading.join(10)
        reader.join(10)

        assert [(2, 2, 2)] == seen

    def test_readers_in_sections_never_see_a_half_run_module(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Threads reading in sections see every pair whole while the module is reloaded repeatedly.
        """
        _write_pair(tree, "gt_mix", 0, pause=0.01)
        import gt_mix

        stop = threading.Event()
        seen: list[tuple[int, int, int]] = []

        def read() -> None:
            # Until the changes are done, bounded in time (not in count: a loaded
            # machine must not end the reading before the last change).
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                with tracker.serving():
                    seen.append(gt_mix.pair())

        readers = [threading.Thread(target=read, daemon=True) for _ in range(3)]
        for each in readers:
            each.start()
        for value in range(1, 6):
            _write_pair(tree, "gt_mix", value, pause=0.01)
            tracker.reload(gt_mix)
        stop.set()
        for each in readers:
            each.join(10)
        mixed = [pair for pair in seen if len(set(pair)) != 1]
        with tracker.serving():
            last = gt_mix.pair()

        assert ([], (5, 5, 5), True) == (mixed, last, len(seen) > 0)

    @pytest.mark.parametrize("mode", ["in-place", "cascade", "many", "rollback", "failing"])
    def test_every_kind_of_change_is_drained(
        self, tree: ModuleTree, tracker: versionload.Tracker, mode: str
    ) -> None:
        """
        Readers in sections see whole versions during in-place updates, cascades, groups,
        rollbacks and reloads that fail half-way.
        """
        _write_pair(tree, "gt_kinds", 0, pause=0.01)
        import gt_kinds

        stop = threading.Event()
        seen: list[tuple[int, int, int]] = []

        def read() -> None:
            # Until the changes are done, bounded in time (not in count: a loaded
            # machine must not end the reading before the last change).
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                with tracker.serving():
                    seen.append(gt_kinds.pair())

        readers = [threading.Thread(target=read, daemon=True) for _ in range(3)]
        for each in readers:
            each.start()
        try:
            for value in range(1, 4):
                _write_pair(tree, "gt_kinds", value, pause=0.01)
                if mode == "in-place":
                    tracker.reload(gt_kinds, update="in-place")
                elif mode == "cascade":
                    tracker.reload(gt_kinds, cascade=True)
                elif mode == "many":
                    tracker.reload_many([gt_kinds])
                elif mode == "rollback":
                    tracker.reload(gt_kinds)
                    tracker.rollback(gt_kinds, 1)
                else:
                    tree.module("gt_kinds", f"import time\nA = {value}\ntime.sleep(0.01)\nraise ValueError\n")
                    with pytest.raises(versionload.ReloadError):
                        tracker.reload(gt_kinds)
        finally:
            stop.set()
            for each in readers:
                each.join(10)
        mixed = [pair for pair in seen if len(set(pair)) != 1]

        assert [] == mixed
        assert seen

    def test_reload_inside_a_section_does_not_wait_for_its_own(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A reload requested inside a section (an admin endpoint) applies at once.
        """
        tracker.drain_timeout = 0
        _write_pair(tree, "gt_self", 1)
        import gt_self

        _write_pair(tree, "gt_self", 2)
        with tracker.serving(), tracker.serving():
            tracker.reload(gt_self)
            inside = gt_self.pair()

        assert (2, 2, 2) == inside

    def test_reload_inside_a_section_waits_for_other_threads(
        self, tree: ModuleTree, tracker: versionload.Tracker, holder: Callable[[], _Holder]
    ) -> None:
        """
        A reload inside a section still waits for other threads' sections.
        """
        tracker.drain_timeout = 0.05
        _write_pair(tree, "gt_others", 1)
        import gt_others

        holder()
        _write_pair(tree, "gt_others", 2)
        with tracker.serving(), pytest.raises(versionload.DrainTimeoutError) as caught:
            tracker.reload(gt_others)

        assert (1, (1, 1, 1)) == (caught.value.in_flight, gt_others.pair())

    def test_module_code_calling_a_decorated_function_does_not_deadlock(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        The new code may run sections itself (at import time) while its reload holds the gate.
        """
        served = types.ModuleType("gt_served")
        served.run = tracker.serving()(lambda: 7)  # type: ignore[attr-defined]
        sys.modules["gt_served"] = served
        tree.module("gt_runs", "import gt_served\nVALUE = gt_served.run() + 0\n")
        import gt_runs

        tree.module("gt_runs", "import gt_served\nVALUE = gt_served.run() + 1\n")
        tracker.drain_timeout = 5
        tracker.reload(gt_runs)

        assert 8 == gt_runs.VALUE

    def test_two_reloads_inside_sections_of_two_threads_do_not_hang(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Two threads each reloading inside a section wait for each other: one gives up at once.
        """
        tracker.drain_timeout = None
        tree.module("gt_dl1", "X = 1\n")
        tree.module("gt_dl2", "X = 1\n")
        import gt_dl1
        import gt_dl2

        barrier = threading.Barrier(2, timeout=10)

        def work(module: types.ModuleType) -> Callable[[], object]:
            def run() -> object:
                with tracker.serving():
                    barrier.wait()
                    return tracker.reload(module)

            return run

        first, one = _in_thread(work(gt_dl1))
        second, two = _in_thread(work(gt_dl2))
        first.join(10)
        second.join(10)
        outcomes = one + two
        errors = [each for each in outcomes if isinstance(each, versionload.DrainTimeoutError)]

        assert (2, 1, None) == (len(outcomes), len(errors), errors[0].timeout)


class TestDrainTimeout:
    """
    A change whose sections do not drain in time changes nothing.
    """

    @pytest.mark.parametrize("operation", ["reload", "cascade", "in-place", "many", "rollback"])
    def test_nothing_changes_and_the_event_says_why(
        self,
        tree: ModuleTree,
        tracker: versionload.Tracker,
        holder: Callable[[], _Holder],
        operation: str,
        bytecode: bool,
    ) -> None:
        """
        `DrainTimeoutError` names the module and the sections; ``module.reload_deferred`` says the same.
        """
        _write_pair(tree, "gt_late", 1)
        import gt_late

        _write_pair(tree, "gt_late", 2)
        tracker.reload(gt_late)
        _write_pair(tree, "gt_late", 3)
        tracker.drain_timeout = 0.05
        holder()
        holder()
        calls: dict[str, Callable[[], object]] = {
            "reload": lambda: tracker.reload(gt_late),
            "cascade": lambda: tracker.reload(gt_late, cascade=True),
            "in-place": lambda: tracker.reload(gt_late, update="in-place"),
            "many": lambda: tracker.reload_many([gt_late]),
            "rollback": lambda: tracker.rollback(gt_late, 1),
        }
        with capture_events(tracker) as events, pytest.raises(versionload.DrainTimeoutError) as caught:
            calls[operation]()
        error = caught.value
        expected_event = {
            "module": "gt_late",
            "reason": "requested",
            "modules": ["gt_late"],
            "operation": "reload" if operation == "in-place" else operation,
            "in_flight": 2,
            "timeout": 0.05,
        }

        assert [expected_event] == [event.fields() for event in events]
        assert ("gt_late", ("gt_late",), 2, 0.05) == (
            error.module,
            error.modules,
            error.in_flight,
            error.timeout,
        )
        assert ((2, 2, 2), 2) == (gt_late.pair(), tracker.current(gt_late).number)

    def test_the_error_is_a_reload_error_and_pickles(self) -> None:
        """
        `DrainTimeoutError` is a `ReloadError` that survives pickling with its fields.
        """
        error = versionload.DrainTimeoutError(("a", "b"), in_flight=3, timeout=1.5)
        copy = pickle.loads(pickle.dumps(error))

        assert isinstance(copy, versionload.ReloadError)
        assert (str(error), ("a", "b"), "a", 3, 1.5) == (
            str(copy),
            copy.modules,
            copy.module,
            copy.in_flight,
            copy.timeout,
        )

    def test_sections_held_back_go_on_after_a_timeout(
        self, tree: ModuleTree, tracker: versionload.Tracker, holder: Callable[[], _Holder]
    ) -> None:
        """
        Sections that waited behind a change that gave up start once it gave up.
        """
        tree.module("gt_giveup", "X = 1\n")
        import gt_giveup

        tracker.drain_timeout = 0.2
        holder()
        reloading, outcome = _in_thread(lambda: tracker.reload(gt_giveup))
        assert wait_for(lambda: _waiting(tracker))

        def late() -> int:
            with tracker.serving():
                return tracker.sections_in_flight

        reader, seen = _in_thread(late)
        reloading.join(10)
        reader.join(10)

        assert ([2], versionload.DrainTimeoutError) == (seen, type(outcome[0]))


class TestDrainTimeoutSetting:
    """
    ``drain_timeout`` on `install`, `Tracker`, `Tracker.configure` and the property.
    """

    @pytest.mark.parametrize("value", [-1, -0.5, "1", True, math.nan, [1]])
    def test_bad_values_are_refused(self, value: object) -> None:
        """
        A negative or non-number timeout raises `InvalidArgumentError` and changes nothing.
        """
        tracker = versionload.Tracker(drain_timeout=5)
        setters: list[Callable[[], object]] = [
            lambda: versionload.Tracker(drain_timeout=value),  # type: ignore[arg-type]
            lambda: tracker.configure(drain_timeout=value),  # type: ignore[arg-type]
            lambda: setattr(tracker, "drain_timeout", value),
            lambda: versionload.install(drain_timeout=value),  # type: ignore[arg-type]
        ]
        for setter in setters:
            with pytest.raises(versionload.InvalidArgumentError):
                setter()

        assert (5.0, 30.0) == (tracker.drain_timeout, versionload.default_tracker().drain_timeout)

    def test_values_are_kept(self) -> None:
        """
        The default is 30 s; None (and infinity) wait forever; install sets the default tracker's.
        """
        tracker = versionload.Tracker()
        seen: list[float | None] = [tracker.drain_timeout]
        tracker.configure(drain_timeout=None)
        seen.append(tracker.drain_timeout)
        tracker.drain_timeout = math.inf
        seen.append(tracker.drain_timeout)
        seen.append(versionload.install(drain_timeout=2).drain_timeout)

        assert [30.0, None, None, 2.0] == seen


class TestAsyncGate:
    """
    Sections of asyncio tasks: waiting without blocking the loop, reloads on the loop's thread.
    """

    def test_a_task_waiting_at_the_gate_does_not_block_the_loop(
        self, tree: ModuleTree, tracker: versionload.Tracker, holder: Callable[[], _Holder]
    ) -> None:
        """
        While a task waits behind a reload, other tasks of the loop keep running.
        """
        tree.module("gt_loop", "X = 1\n")
        import gt_loop

        held = holder()
        tree.module("gt_loop", "X = 2\n")
        reloading, _ = _in_thread(lambda: tracker.reload(gt_loop))
        assert wait_for(lambda: _waiting(tracker))

        async def main() -> tuple[int, int]:
            ticks = 0

            async def waiter() -> int:
                async with tracker.serving():
                    return int(gt_loop.X)

            task = asyncio.ensure_future(waiter())
            while ticks < 20:
                await asyncio.sleep(0.001)
                ticks += 1
            held.stop()
            return await asyncio.wait_for(task, 10), ticks

        assert (2, 20) == asyncio.run(main())
        reloading.join(10)

    def test_reload_on_the_loop_thread_with_other_tasks_in_sections(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A handler reloading on the loop's thread does not wait for the loop's other tasks (no deadlock).
        """
        tracker.drain_timeout = None
        tree.module("gt_same", "X = 1\n")
        import gt_same

        async def main() -> list[int]:
            started = asyncio.Event()
            seen = []

            async def other() -> None:
                async with tracker.serving():
                    started.set()
                    await asyncio.sleep(0.01)
                    seen.append(gt_same.X)

            async def admin() -> None:
                await started.wait()
                async with tracker.serving():
                    tree.module("gt_same", "X = 2\n")
                    tracker.reload(gt_same)
                    seen.append(gt_same.X)

            await asyncio.wait_for(asyncio.gather(other(), admin()), 10)
            return seen

        assert [2, 2] == asyncio.run(main())

    def test_reload_from_a_worker_thread_of_a_task_in_a_section(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A handler reloading through ``asyncio.to_thread`` (a sync endpoint) does not wait for its request.
        """
        tracker.drain_timeout = 5
        tree.module("gt_worker", "X = 1\n")
        import gt_worker

        async def main() -> int:
            async with tracker.serving():
                tree.module("gt_worker", "X = 2\n")
                await asyncio.to_thread(tracker.reload, gt_worker)
                return int(gt_worker.X)

        assert 2 == asyncio.run(main())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
class TestFork:
    """
    A forked child's gate forgets the sections of threads that do not exist there.
    """

    def test_child_reloads_although_the_parent_had_sections_in_flight(
        self, tree: ModuleTree, tracker: versionload.Tracker, holder: Callable[[], _Holder]
    ) -> None:
        """
        In the child, a reload does not wait for a section held by another parent thread.
        """
        tree.module("gt_fork", "X = 1\n")
        import gt_fork

        holder()
        tracker.drain_timeout = 2
        tree.module("gt_fork", "X = 2\n")
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a multi-threaded process is risky: that is the case tested.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                tracker.reload(gt_fork)
                code = 0 if (gt_fork.X, tracker.sections_in_flight) == (2, 0) else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:  # pragma: no cover - only when the child hangs
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child hung")

        assert (0, 1) == (os.waitstatus_to_exitcode(status), tracker.sections_in_flight)


class TestWatcherDeferred:
    """
    A watcher's reload deferred by the gate is retried on the next change.
    """

    def test_deferred_then_retried(
        self, tree: ModuleTree, tracker: versionload.Tracker, holder: Callable[[], _Holder]
    ) -> None:
        """
        The first change is reported failed (deferred), the next one reloads.
        """
        tree.module("gt_watched", "X = 1\n")
        import gt_watched

        tracker.drain_timeout = 0.05
        watcher = versionload.Watcher(tracker, (str(tree.root),), force_polling=True)
        watcher.attach()  # no thread: poll() looks for changes
        held = holder()
        tree.module("gt_watched", "X = 2\n")
        first = watcher.poll()
        held.stop()
        tree.module("gt_watched", "X = 22\n")
        second = watcher.poll()
        watcher.detach()

        assert (["failed"], ["reloaded"], 2) == (
            [change.outcome for change in first],
            [change.outcome for change in second],
            gt_watched.X // 11,
        )
        assert "DrainTimeoutError" in str(first[0].error)
