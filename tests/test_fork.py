"""
Forking a process while another of its threads is inside versionload (pre-fork servers,
multiprocessing with the fork start method): the child's versionload calls must work.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import versionload

from .helpers import ModuleTree

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only"),
    # Python 3.12+ warns that forking a multi-threaded process may deadlock: that is
    # exactly the situation these tests create on purpose.
    pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"),
]

FORKS = 20
CHILD_TIMEOUT = 20.0


def _child(tracker: versionload.Tracker, name: str) -> int:
    """
    The child's work: import a tracked module, reload it, read histories. Returns its exit status.
    """
    try:
        module = importlib.import_module(name)
        tracker.reload(module)
        numbers = [v.number for v in tracker.history(module)]
        tracker.history("fork_churn")
        tracker.tracked()
        return 0 if [1, 2] == numbers else 3
    except BaseException:  # noqa: BLE001 - any failure is the child's exit status
        return 4


def _wait(pid: int, deadline: float) -> int | None:
    """
    The child's exit status, or None if it was still running at ``deadline`` (then it is killed).
    """
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


class TestFork:
    def test_child_forked_during_imports_and_reloads_can_use_versionload(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """Children forked while another thread imports and reloads all finish their own versionload calls."""
        tree.module("fork_churn", "VALUE = 1\n")
        tree.module("fork_fresh", "VALUE = 1\n")
        for index in range(FORKS):
            tree.module(f"fork_child_{index}", "VALUE = 1\n")
        churn = importlib.import_module("fork_churn")
        stop = threading.Event()

        def busy() -> None:
            # Bounded: the test stops it, and it never outlives a minute.
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                tracker.reload(churn)
                sys.modules.pop("fork_fresh", None)
                importlib.import_module("fork_fresh")
                tracker.tracked()

        worker = threading.Thread(target=busy, daemon=True)
        # Switch threads as often as the interpreter can, so that forks land inside
        # versionload's short critical sections, not only between them.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        worker.start()
        statuses: list[int | None] = []
        try:
            for index in range(FORKS):
                time.sleep(0.005)  # let the worker get well inside versionload
                pid = os.fork()
                if pid == 0:  # the child: never return into pytest
                    status = 5
                    try:
                        status = _child(tracker, f"fork_child_{index}")
                    finally:
                        os._exit(status)
                statuses.append(_wait(pid, time.monotonic() + CHILD_TIMEOUT))
        finally:
            stop.set()
            worker.join(30)
            sys.setswitchinterval(interval)

        assert [0] * FORKS == statuses
        assert not worker.is_alive()


class TestForkRegistrations:
    def test_dropped_trackers_leave_no_fork_hooks_behind(self) -> None:
        """Trackers that are dropped are forgotten by the after-fork renewal: nothing accumulates."""
        from versionload import _fork

        gc.collect()
        before = len(_fork._owners)
        trackers = [versionload.Tracker() for _ in range(50)]
        during = len(_fork._owners)
        del trackers
        gc.collect()

        assert before == len(_fork._owners)
        assert during >= before + 50  # each live tracker was registered

    def test_collection_while_registering_does_not_deadlock(self) -> None:
        """The collector may forget an owner in a thread that is registering another one."""
        # A registration allocates while it holds the registrations' lock, and any
        # allocation may run the collector, which calls the `forget` callback of an
        # owner that was left in a reference cycle. Holding the lock and collecting
        # makes that moment certain; before the fix, the child hung on it.
        program = (
            "import gc\n"
            "from versionload import _fork\n"
            "class Owner:\n"
            "    pass\n"
            "before = len(_fork._owners)\n"
            "doomed = Owner()\n"
            "doomed.cycle = doomed\n"
            "_fork.renew_after_fork(doomed, 'lock', object)\n"
            "del doomed\n"
            "with _fork._owners_lock:\n"
            "    gc.collect()\n"
            "print(len(_fork._owners) - before)\n"
        )

        result = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=CHILD_TIMEOUT
        )

        assert ("0\n", 0) == (result.stdout, result.returncode)
