"""
Reloads and rollbacks of one module are serialised; everything else keeps moving.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
import types
from collections.abc import Callable

import pytest

import versionload

from .helpers import ModuleTree, wait_for

THREADS = 8

# Module code that counts how many executions of it overlap, through a probe module.
_PROBED = """
import time
import th_probe

th_probe.enter()
time.sleep(0.002)  # widen the window in which an unserialised reload would overlap
VALUE = {value}
th_probe.leave()
"""


@pytest.fixture(name="probe")
def _probe() -> types.ModuleType:
    """
    A module ``th_probe`` that records the most module executions ever running at once.
    """
    probe = types.ModuleType("th_probe")
    lock = threading.Lock()
    state = {"active": 0, "most": 0, "runs": 0}

    def enter() -> None:
        with lock:
            state["active"] += 1
            state["runs"] += 1
            state["most"] = max(state["most"], state["active"])

    def leave() -> None:
        with lock:
            state["active"] -= 1

    probe.enter, probe.leave, probe.state = enter, leave, state  # type: ignore[attr-defined]
    sys.modules["th_probe"] = probe  # the autouse fixture removes it again
    return probe


def _run_together(count: int, work: Callable[[int], object]) -> list[BaseException]:
    """
    Start ``count`` threads that call ``work(i)`` at once (a Barrier); return their exceptions.
    """
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            work(index)
        except BaseException as error:  # noqa: BLE001 - collected and asserted on
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return errors


@pytest.mark.timeout(30)
class TestConcurrentReload:
    """
    Many threads reloading and rolling back one module.
    """

    def test_reloads_are_serialised(self, tree: ModuleTree, probe: types.ModuleType) -> None:
        """
        Threads reloading one module at a barrier never overlap, and every reload gets its own number.
        """
        tracker = versionload.Tracker(max_versions=100).install()
        tree.module("th_target", _PROBED.format(value=0))
        import th_target

        errors = _run_together(THREADS, lambda _: tracker.reload(th_target))
        assert [] == errors
        assert 1 == probe.state["most"]
        assert THREADS + 1 == probe.state["runs"]
        history = tracker.history(th_target)
        assert list(range(1, THREADS + 2)) == [v.number for v in history]
        assert ["import"] + ["reload"] * THREADS == [v.reason for v in history]
        assert THREADS + 1 == tracker.current(th_target).number

    def test_reloads_and_rollbacks_leave_a_consistent_state(
        self, tree: ModuleTree, probe: types.ModuleType
    ) -> None:
        """
        Interleaved reloads and rollbacks raise nothing and end with the namespace of the current version.
        """
        tracker = versionload.Tracker(max_versions=100).install()
        tree.module("th_mixed", _PROBED.format(value=0))
        import th_mixed

        def work(index: int) -> None:
            for _ in range(3):
                if index % 2:
                    tracker.rollback(th_mixed, to=1)
                else:
                    tracker.reload(th_mixed)

        assert [] == _run_together(THREADS, work)
        assert 1 == probe.state["most"]
        current = tracker.current(th_mixed)
        assert sorted(current.bindings) == sorted(vars(th_mixed))
        assert all(vars(th_mixed)[name] is value for name, value in current.bindings.items())
        numbers = [v.number for v in tracker.history(th_mixed)]
        assert list(range(1, len(numbers) + 1)) == numbers
        assert 1 + (THREADS // 2) * 3 == len(numbers)

    def test_plain_and_versionload_reloads_together(self, tree: ModuleTree, probe: types.ModuleType) -> None:
        """
        Plain and versionload reloads in many threads: every execution recorded, none overlapping.
        """
        tracker = versionload.Tracker(max_versions=100).install()
        tree.module("th_both", _PROBED.format(value=0))
        import th_both

        def work(index: int) -> None:
            if index % 2:
                importlib.reload(th_both)
            else:
                tracker.reload(th_both)

        assert [] == _run_together(THREADS, work)
        numbers = [v.number for v in tracker.history(th_both)]
        # importlib.reload returns at once while another importlib.reload of the module
        # runs (its _RELOADING table), so only versionload's own reloads are all counted.
        assert list(range(1, len(numbers) + 1)) == numbers
        assert len(numbers) >= 1 + THREADS // 2
        assert len(numbers) == probe.state["runs"]
        assert 1 == probe.state["most"]


@pytest.mark.timeout(30)
class TestOtherWorkProceeds:
    """
    What other threads can do while a reload's module code runs.
    """

    def test_imports_and_other_reloads_proceed_during_a_reload(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        While one module's reload is blocked in its code, other threads import and reload other modules.
        """
        gate = types.ModuleType("th_gate")
        gate.entered = threading.Event()  # type: ignore[attr-defined]
        gate.release = threading.Event()  # type: ignore[attr-defined]
        sys.modules["th_gate"] = gate
        path = tree.module("th_slow", "X = 1\n")
        tree.module("th_fresh", "Y = 1\n")
        other = tree.module("th_other", "Z = 1\n")
        import th_other
        import th_slow

        path.write_text("import th_gate\nth_gate.entered.set()\nth_gate.release.wait(20)\nX = 2\n")
        slow_done = threading.Event()
        same_done = threading.Event()

        def slow_reload() -> None:
            tracker.reload(th_slow)
            slow_done.set()

        def same_module_reload() -> None:
            tracker.reload(th_slow)
            same_done.set()

        slow = threading.Thread(target=slow_reload)
        slow.start()
        try:
            assert gate.entered.wait(10)
            same = threading.Thread(target=same_module_reload)
            same.start()
            results: dict[str, object] = {}

            def elsewhere() -> None:
                results["fresh"] = importlib.import_module("th_fresh").Y
                other.write_text("Z = 2\n")
                results["other"] = tracker.reload(th_other).Z

            worker = threading.Thread(target=elsewhere)
            worker.start()
            worker.join(timeout=10)
            assert not worker.is_alive()
            assert {"fresh": 1, "other": 2} == results
            assert not slow_done.is_set()
            assert not same_done.is_set()
        finally:
            gate.release.set()
        slow.join(timeout=10)
        same.join(timeout=10)
        assert wait_for(lambda: slow_done.is_set() and same_done.is_set())
        assert 2 == th_slow.X
        assert [1, 2, 3] == [v.number for v in tracker.history(th_slow)]

    def test_reload_importing_a_module_another_thread_imports(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A reload whose code imports a module that other threads import at the same time does not deadlock.
        """
        path = tree.module("th_importer", "X = 1\n")
        tree.module("th_shared", "import time\ntime.sleep(0.01)\nS = 1\n")
        import th_importer

        path.write_text("import th_shared\nX = th_shared.S + 1\n")

        def work(index: int) -> None:
            if index == 0:
                tracker.reload(th_importer)
            else:
                importlib.import_module("th_shared")

        assert [] == _run_together(4, work)
        assert 2 == th_importer.X
        assert [1] == [v.number for v in tracker.history("th_shared")]


@pytest.mark.timeout(60)
class TestReadersDuringReloads:
    """
    Reading a module's history while another thread reloads it.
    """

    def test_current_and_history_never_miss_a_version(self, tree: ModuleTree) -> None:
        """
        current() and history() never raise while another thread reloads and prunes the module.
        """
        # Only the current version kept: every reload prunes the one before, so a
        # reader that looked up the current number just before would find it gone.
        tracker = versionload.Tracker(max_versions=1).install()
        tree.module("th_read", "VALUE = 0\n")
        import th_read

        reloads = 100
        done = threading.Event()
        failures: list[BaseException] = []
        seen: list[int] = []

        def work(index: int) -> None:
            if index == 0:
                try:
                    for _ in range(reloads):
                        tracker.reload(th_read)
                finally:
                    done.set()
                return
            deadline = time.monotonic() + 20
            for _ in range(50_000):
                if done.is_set() or time.monotonic() > deadline:
                    break
                try:
                    current = tracker.current("th_read")
                    versions = tracker.history(th_read)
                    latest = tracker.current(th_read)
                except versionload.VersionLoadError as error:
                    failures.append(error)
                    continue
                assert current.number <= versions[-1].number <= latest.number
                seen.append(current.number)

        previous = sys.getswitchinterval()
        # Switch threads very often, so that reads interleave with each reload's steps.
        sys.setswitchinterval(1e-4)
        try:
            errors = _run_together(2, work)
        finally:
            sys.setswitchinterval(previous)

        assert [] == errors
        assert [] == failures
        assert reloads + 1 == tracker.current(th_read).number
        assert seen == sorted(seen)
