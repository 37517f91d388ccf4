"""
Structured events: their names, their frozen payloads, and how they are emitted.

Event names are a public contract (documented in ``docs/events.md``); fields are
flat and JSON-friendly. Each event goes to the tracker's subscribers (as the payload
object) and to the structlog logger named ``versionload`` (as a flat dict).

Loads are frequent, so their events are only built when somebody listens: a
subscriber, or a structlog configuration that lets debug events through. A program
that never configures structlog gets reload, failure and rollback events on its
output, and no line per import.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import attrs
import structlog

LOGGER_NAME = "versionload"


@attrs.frozen
class Event:
    """
    Base of every event payload; ``event`` is the stable dotted name.

    .. versionadded:: 0.1.0
    """

    event: ClassVar[str]
    level: ClassVar[str] = "info"

    module: str

    def fields(self) -> dict[str, Any]:
        """
        The payload as flat, JSON-friendly fields (tuples become lists).
        """
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in attrs.asdict(self, recurse=False).items()
        }


@attrs.frozen
class ModuleLoaded(Event):
    """
    A module was imported (``reason="import"``) or adopted (``reason="adopted"``).
    """

    event: ClassVar[str] = "module.loaded"
    level: ClassVar[str] = "debug"

    version: int
    reason: str
    origin: str | None
    source_sha256: str | None
    names: int


@attrs.frozen
class NamespaceChanged(Event):
    """
    Base of the events that moved a module from one version to another.

    ``added``/``removed``/``changed`` are the names, from ``previous_version``'s
    namespace to ``version``'s.
    """

    version: int
    previous_version: int
    reason: str
    origin: str | None
    source_sha256: str | None
    duration_ms: float
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]


@attrs.frozen
class ModuleReloaded(NamespaceChanged):
    """
    A reload succeeded and recorded a new version.
    """

    event: ClassVar[str] = "module.reloaded"


@attrs.frozen
class ModuleReloadFailed(Event):
    """
    A reload failed; the module was left exactly as it was.
    """

    event: ClassVar[str] = "module.reload_failed"
    level: ClassVar[str] = "error"

    previous_version: int
    origin: str | None
    source_sha256: str | None
    duration_ms: float
    error: str
    location: str | None


@attrs.frozen
class ModuleRolledBack(NamespaceChanged):
    """
    A module's namespace was restored to an earlier version.
    """

    event: ClassVar[str] = "module.rolled_back"
    level: ClassVar[str] = "warning"


@attrs.frozen
class VersionPruned(Event):
    """
    An old version was dropped to keep the history within ``max_versions``.
    """

    event: ClassVar[str] = "version.pruned"
    level: ClassVar[str] = "debug"

    version: int
    current_version: int


@attrs.frozen
class HistoryEnded(Event):
    """
    A module's history was dropped: the module object was garbage-collected,
    or its name now refers to a different module object.
    """

    event: ClassVar[str] = "module.history_ended"
    level: ClassVar[str] = "debug"

    last_version: int
    cause: str


@attrs.frozen
class ModulePatched(Event):
    """
    An in-place reload updated old functions and classes; ``rebound`` lists those
    that could not be updated and were rebound instead, each as ``"qualname: reason"``.
    """

    event: ClassVar[str] = "module.patched"

    version: int
    patched: tuple[str, ...]
    rebound: tuple[str, ...]


@attrs.frozen
class CascadeReloaded(Event):
    """
    A group of modules (a cascade, or `reload_many`) was reloaded, all of them.

    ``module`` is the cascade's trigger (for `reload_many`, the first module) and
    ``trigger`` is None for `reload_many`. ``adopted`` are the modules of ``modules``
    that were not tracked before and were adopted to be reloaded.
    """

    event: ClassVar[str] = "cascade.reloaded"

    trigger: str | None
    modules: tuple[str, ...]
    versions: tuple[int, ...]
    update: str
    duration_ms: float
    adopted: tuple[str, ...] = ()


@attrs.frozen
class CascadeFailed(Event):
    """
    A module of a group failed; every module of the group is as it was before.

    ``undone`` are the modules whose new code had run and was undone, ``skipped``
    the modules not attempted.
    """

    event: ClassVar[str] = "cascade.failed"
    level: ClassVar[str] = "error"

    trigger: str | None
    modules: tuple[str, ...]
    failed: str
    error: str
    undone: tuple[str, ...]
    skipped: tuple[str, ...]
    duration_ms: float


@attrs.frozen
class ModuleReloadDeferred(Event):
    """
    A change (``operation``: ``"reload"``, ``"rollback"``, ``"cascade"`` or
    ``"many"``) was not applied because serving sections were still in flight after
    ``timeout`` seconds (None: they could never end); every module is as it was.

    ``module`` is the first module of ``modules``, ``in_flight`` the number of
    sections the change waited for.
    """

    event: ClassVar[str] = "module.reload_deferred"
    level: ClassVar[str] = "warning"

    modules: tuple[str, ...]
    operation: str
    in_flight: int
    timeout: float | None


EVENT_TYPES: tuple[type[Event], ...] = (
    ModuleLoaded,
    ModuleReloaded,
    ModuleReloadFailed,
    ModuleRolledBack,
    VersionPruned,
    HistoryEnded,
    ModulePatched,
    CascadeReloaded,
    CascadeFailed,
    ModuleReloadDeferred,
)

Subscriber = Callable[[Event], object]


#: The stdlib level numbers of the event levels, for structlog's level checks.
_LEVEL_NUMBERS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def wanted(subscribers: Iterable[Subscriber], level: str) -> bool:
    """
    Whether an event at ``level`` would reach anybody: a subscriber, or structlog.

    Building an event can cost more than the operation it reports (a reload's diff
    looks at every name), so it is skipped when nobody would receive it. Unconfigured
    structlog prints everything but debug events (see `emit`).
    """
    return bool(subscribers) or logs(level)


def logs(level: str) -> bool:
    """
    Whether structlog lets events of the ``versionload`` logger at ``level`` through.
    """
    if not structlog.is_configured():
        return level != "debug"
    try:
        bound = structlog.get_logger(LOGGER_NAME).bind()
        check = getattr(bound, "is_enabled_for", None) or getattr(bound, "isEnabledFor", None)
        return True if check is None else bool(check(_LEVEL_NUMBERS[level]))
    except Exception:  # noqa: BLE001 - a broken configuration is emit's to report
        return True


def logs_debug() -> bool:
    """
    Whether structlog is configured to let debug events of the ``versionload`` logger through.
    """
    return logs("debug")


def debug_wanted(subscribers: Iterable[Subscriber]) -> bool:
    """
    Whether a debug-level event (a load, a prune) would reach anybody.
    """
    return wanted(subscribers, "debug")


def emit(event: Event, subscribers: Iterable[Subscriber]) -> None:
    """
    Send ``event`` to each subscriber and to structlog; never raises.

    A failing subscriber or log processor must not turn a reload that succeeded
    into an exception, so failures are reported through ``sys.unraisablehook``.
    """
    for subscriber in tuple(subscribers):
        try:
            subscriber(event)
        except Exception as error:  # noqa: BLE001 - reported, not swallowed
            report_error(error, f"versionload: subscriber {subscriber!r} failed on {event.event}")
    if event.level == "debug" and not structlog.is_configured():
        return
    try:
        logger = structlog.get_logger(LOGGER_NAME)
        getattr(logger, event.level)(event.event, **event.fields())
    except Exception as error:  # noqa: BLE001 - reported, not swallowed
        report_error(error, f"versionload: logging {event.event} failed")


def report_error(error: BaseException, message: str) -> None:
    """
    Report an error that must not propagate, the way Python reports one in ``__del__``.
    """
    sys.unraisablehook(
        types.SimpleNamespace(
            exc_type=type(error),
            exc_value=error,
            exc_traceback=error.__traceback__,
            err_msg=message,
            object=None,
        )
    )
