"""
The drain gate: sections of serving code that no reload interrupts.

A *section* is a unit of work (a request, a task, a hook call) marked with
`Gate.section` (``versionload.serving()``). An operation that changes modules (a
reload, a rollback, a group) first *drains* the gate: it waits until the sections in
flight have ended, holds new ones back meanwhile, applies its change, then lets them
go. Code inside a section therefore sees every module either before or after a
change, never half-executed.

The bookkeeping:

- ``held`` (per thread, written only by that thread): the sections the thread holds,
  its outermost sync section plus each asyncio task running on it that is in a
  section; nested sections count once. The sections in flight are the sum.
- ``waiting`` (under the lock): operations waiting to drain. While one waits, new
  sections wait too, so a stream of requests cannot starve a reload (writer
  preference). A thread that already holds a section enters again at once: waiting
  would only delay the drain.
- ``applying`` (under the lock): the threads applying a change. Changes of different
  modules may apply at the same time (each module has its own import lock); new
  sections wait for all of them. An applying thread's own sections (module code
  calling a decorated function while it runs) pass through.

An operation started inside a section does not wait for the sections its own thread
holds: they cannot end while it waits. On an event loop's thread that covers every
task in a section on that loop; they are suspended at an ``await`` while the change
runs, and see it when they resume. When every section in flight belongs to an
operation that waits for the others, none can ever end: the later one fails at once
with `DrainTimeoutError` rather than hanging.

This module is the core's bottom layer: it imports no other part of versionload
except the errors. After ``os.fork`` the child's gates keep only the sections of the
thread that forked (the other threads do not exist there).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

from ._errors import DrainTimeoutError, InvalidArgumentError, ServingSectionError

_F = TypeVar("_F", bound=Callable[..., Any])

#: Seconds an operation waits for sections to end unless told otherwise.
DEFAULT_DRAIN_TIMEOUT = 30.0

# How long an async section waiting at the gate sleeps between looks: short at
# first (a reload is usually quick), then longer so that waiting tasks stay cheap.
_ASYNC_POLL_FIRST = 0.0005
_ASYNC_POLL_MAX = 0.01


def normalize_drain_timeout(value: object) -> float | None:
    """
    Check a ``drain_timeout``: None (wait forever) or a number of seconds, 0 or more.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise InvalidArgumentError(
            f"drain_timeout must be a number of seconds (0 or more) or None, got {value!r}"
        )
    return None if math.isinf(value) else float(value)


class _ThreadState:
    """
    One thread's sections for one gate; only its own thread writes it.
    """

    __slots__ = ("__weakref__", "depth", "held")

    def __init__(self) -> None:
        self.depth = 0  # nesting of this thread's sync sections
        self.held = 0  # sections this thread holds: its outer sync one, plus its tasks' ones


_gates: weakref.WeakSet[Gate] = weakref.WeakSet()


class Gate:
    """
    Sections of serving code, and the drain that changes wait for; see the module docstring.

    Entering a section takes no lock: the thread announces it in its own
    `_ThreadState` and then reads ``closed``; a change sets ``closed`` and then adds
    up the announcements. Each bytecode is atomic under the GIL, so at least one of
    the two sees the other: either the section waits, or the change counts it.
    """

    def __init__(self) -> None:
        self.local = threading.local()  # per-thread state; `Section` reads it directly, for speed
        # Weak references to every thread's state, each removing itself once its thread's
        # state is gone; a plain set of them is cheaper to add up than a WeakSet, whose
        # iteration runs a Python generator and guard (every change adds them up).
        self._states: set[weakref.ref[_ThreadState]] = set()
        self._task_depth: contextvars.ContextVar[int] = contextvars.ContextVar(
            "versionload_section", default=0
        )
        self._reset({})
        self.section = Section(self)
        _gates.add(self)

    def after_fork_in_child(self) -> None:
        """
        Forget the sections of threads that do not exist in a forked child.
        """
        me = threading.get_ident()
        mine = getattr(self.local, "state", None)
        # Only the thread that forked exists here; the old lock may have been held
        # by another thread, so the child gets a new one.
        for ref in list(self._states):
            state = ref()
            if state is not None and state is not mine:
                state.held = state.depth = 0
        self._reset({me: self._applying[me]} if me in self._applying else {})

    def _reset(self, applying: dict[int, int]) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.closed = bool(applying)  # a change waits or applies: new sections wait
        self._waiting = 0
        self._waiting_held = 0  # sections held by the threads of waiting operations
        # Threads applying a change, with their nesting. Changes of different modules
        # may apply at once (each module has its own lock); sections wait for all.
        self._applying = applying

    def __repr__(self) -> str:
        return f"<versionload gate: {self.in_flight} sections in flight, {self._waiting} changes waiting>"

    @property
    def in_flight(self) -> int:
        """
        The sections in flight right now, over all threads.
        """
        return sum(state.held for ref in list(self._states) if (state := ref()) is not None)

    def state(self) -> _ThreadState:
        """
        This thread's state, made on first use.
        """
        try:
            found: _ThreadState = self.local.state
        except AttributeError:
            found = self.local.state = _ThreadState()
            with self._lock:
                self._states.add(weakref.ref(found, self._states.discard))
        return found

    # -- sections ----------------------------------------------------------------------

    def enter_slow(self, state: _ThreadState) -> None:
        """
        The outermost sync section of a thread found the gate closed after announcing itself.
        """
        if state.held > 1 or self._task_depth.get():
            # The thread holds sections of its asyncio tasks, or runs work for a task
            # in a section (``asyncio.to_thread`` copies the task's context): waiting
            # could only delay the drain it waits for.
            return
        me = threading.get_ident()
        with self._lock:
            while self.closed and me not in self._applying:
                state.held -= 1  # withdrawn while waiting, so the change can apply
                self._changed.notify_all()
                self._changed.wait()
                state.held += 1

    def leave(self) -> None:
        """
        Wake the changes waiting for sections to end.
        """
        with self._lock:
            self._changed.notify_all()

    async def enter_async(self) -> None:
        depth = self._task_depth.get()
        if depth:
            self._task_depth.set(depth + 1)
            return
        import asyncio  # here: a program that never awaits a section need not import it

        state = self.state()
        me = threading.get_ident()
        pause = _ASYNC_POLL_FIRST
        while True:
            state.held += 1
            if not self.closed or me in self._applying:
                break
            state.held -= 1
            self.leave()
            # Never block the loop: the change we wait for may need it to run.
            await asyncio.sleep(pause)
            pause = min(pause * 2, _ASYNC_POLL_MAX)
        self._task_depth.set(1)

    def exit_async(self) -> None:
        depth = self._task_depth.get()
        if depth <= 0:
            raise ServingSectionError("a serving() section was left that this task had not entered")
        self._task_depth.set(depth - 1)
        if depth > 1:
            return
        self.state().held -= 1
        if self.closed:
            self.leave()

    # -- changes -----------------------------------------------------------------------

    def close(self, modules: tuple[str, ...], timeout: float | None) -> bool:
        """
        Close the gate for a change: wait until no other section is in flight.

        Returns whether the change is nested in one this thread is applying already;
        pass that to `reopen` once the change is applied (or failed).

        Raises:
            DrainTimeoutError: sections were still in flight after ``timeout`` seconds
                (None: wait forever), or could never end; the gate is open again.
        """
        me = threading.get_ident()
        own = self.state().held  # before the lock: making the state takes the lock
        if own == 0 and self._task_depth.get() and not _runs_event_loop():
            # Work that an asyncio task in a section handed to this thread
            # (``asyncio.to_thread`` copies the task's context): that task's section
            # cannot end while this change waits.
            own = 1
        with self._lock:
            depth = self._applying.get(me)
            if depth:
                # A change made while applying one (module code reloading another module).
                self._applying[me] = depth + 1
                return True
            self._wait_for_drain(me, own, modules, timeout)
            return False

    def reopen(self, nested: bool) -> None:
        """
        Let sections in again after a change that `close` let through (when no other
        change applies); ``nested`` is what `close` returned.
        """
        del nested  # the thread's own nesting count says the same
        me = threading.get_ident()
        with self._lock:
            depth = self._applying.pop(me, 1) - 1
            if depth:
                self._applying[me] = depth
                return
            self.closed = self._waiting > 0 or bool(self._applying)
            self._changed.notify_all()

    @contextmanager
    def drained(self, modules: tuple[str, ...], timeout: float | None) -> Iterator[None]:
        """
        `close` and `reopen` around a block.
        """
        nested = self.close(modules, timeout)
        try:
            yield
        finally:
            self.reopen(nested)

    def _wait_for_drain(self, me: int, own: int, modules: tuple[str, ...], timeout: float | None) -> None:
        # Called with the lock held; ``own`` are the sections this thread holds.
        deadline = None if timeout is None else time.monotonic() + timeout
        self._waiting += 1
        self._waiting_held += own
        self.closed = True
        try:
            while True:
                # Read after ``closed`` was set: a section announced before it is counted here.
                active = self.in_flight
                if active <= own:
                    break
                others = active - own
                if own and active == self._waiting_held:
                    # Every section in flight belongs to an operation waiting for the others.
                    raise DrainTimeoutError(modules, in_flight=others, timeout=timeout, deadlock=True)
                if deadline is None:
                    self._changed.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DrainTimeoutError(modules, in_flight=others, timeout=timeout)
                self._changed.wait(remaining)
            self._applying[me] = 1
        finally:
            self._waiting -= 1
            self._waiting_held -= own
            self.closed = bool(self._applying) or self._waiting > 0
            # Sections held back by this operation may go if it gave up.
            self._changed.notify_all()


class Section:
    """
    ``versionload.serving()``: a section as a context manager, decorator or async context manager.

    One object serves every use: the state lives per thread and per asyncio task.
    """

    __slots__ = ("__weakref__", "_gate", "_local")

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._local = gate.local

    def __repr__(self) -> str:
        return f"<versionload.serving section, {self._gate.in_flight} in flight>"

    # The sync path is written out in full, without helper calls: it runs once per
    # request and is most of what a section costs.
    def __enter__(self) -> None:
        try:
            state: _ThreadState = self._local.state
        except AttributeError:
            state = self._gate.state()
        if state.depth:
            state.depth += 1
            return
        state.held += 1  # announce first, then look (see `Gate`)
        state.depth = 1
        if self._gate.closed:
            self._gate.enter_slow(state)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None or state.depth <= 0:
            # Going below zero would stop this thread's later sections from being seen.
            raise ServingSectionError("a serving() section was left that this thread had not entered")
        state.depth -= 1
        if state.depth:
            return
        state.held -= 1
        if self._gate.closed:
            self._gate.leave()

    async def __aenter__(self) -> None:
        await self._gate.enter_async()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._gate.exit_async()

    def __call__(self, func: _F) -> _F:
        """
        Decorate ``func`` so that each call is a section (a coroutine function's awaits included).
        """
        if not callable(func):
            raise InvalidArgumentError(f"serving() decorates a callable, got {func!r}")
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]
        enter, leave = self.__enter__, self.__exit__

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            enter()
            try:
                return func(*args, **kwargs)
            finally:
                leave(None, None, None)

        return run  # type: ignore[return-value]


def _runs_event_loop() -> bool:
    """
    Whether this thread is running an asyncio event loop (asyncio is not imported for it).
    """
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and asyncio._get_running_loop() is not None


def _after_fork_in_child() -> None:
    for gate in list(_gates):
        gate.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
