"""
Structured events: their names, their frozen payloads, and how they are emitted.

Event names are a public contract (documented in ``docs/events.md``, the schema a
test checks); fields are flat and JSON-friendly. Each event goes to the tracker's
subscribers (as the payload object) and to the application's logging: through
structlog when the application configured structlog, else through the standard
library's ``logging`` under the logger named ``versionload``. versionload never
prints anything itself.

Loads are frequent, so their events are only built when somebody listens: a
subscriber, or a logger that lets their level through. Which logger is used and
which levels it lets through is cached and refreshed when the configuration changes,
so an event nobody receives costs a couple of dictionary lookups.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import operator
import os
import posixpath
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import attrs
import structlog

from ._arguments import resolve_file

LOGGER_NAME = "versionload"

#: The level of ``module.loaded`` for the standard library and installed packages:
#: below DEBUG, so that a program's start-up at DEBUG lists its own modules only.
TRACE = 5

#: How many names a list of names in an event holds at most; the ``*_count`` field
#: beside it says how many there were (`versionload.diff` gives them all).
NAME_CAP = 20

_REASON: contextvars.ContextVar[str] = contextvars.ContextVar("versionload_reason", default="requested")


def current_reason() -> str:
    """
    Why the events emitted now happen: ``"requested"`` unless a caller said otherwise.
    """
    return _REASON.get()


@contextlib.contextmanager
def because(reason: str) -> Iterator[None]:
    """
    Give the events emitted inside the block this ``reason`` (``"watcher"``, ``"undo"``...).
    """
    token = _REASON.set(reason)
    try:
        yield
    finally:
        _REASON.reset(token)


def capped(names: Iterable[str]) -> tuple[str, ...]:
    """
    The first `NAME_CAP` of ``names``, for an event that also carries their count.
    """
    return tuple(names)[:NAME_CAP]


@attrs.frozen
class Event:
    """
    Base of every event payload; ``event`` is the stable dotted name.

    ``reason`` says why the event happened (see ``docs/events.md``). ``exc_info`` is
    the exception of a failure event (not a field: the logger renders its traceback).

    .. versionadded:: 0.1.0
    """

    event: ClassVar[str]
    level: ClassVar[str] = "info"

    module: str
    reason: str = attrs.field(kw_only=True, factory=current_reason)
    exc_info: BaseException | None = attrs.field(kw_only=True, default=None, eq=False, repr=False)

    def fields(self) -> dict[str, Any]:
        """
        The payload as flat, JSON-friendly fields (tuples become lists).
        """
        names, values = _payload_of(type(self))
        got = values(self)
        if not any(map(isinstance, got, itertools.repeat(tuple))):
            # Most events (every load's) hold no tuple: the dict is built in C.
            return dict(zip(names, got, strict=True))
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in zip(names, got, strict=True)
        }


#: For each event class: its payload fields in declaration order (without
#: ``exc_info``), and a getter of their values as a tuple.
_PAYLOADS: dict[type[Event], tuple[tuple[str, ...], Callable[[Event], tuple[Any, ...]]]] = {}


def _payload_of(cls: type[Event]) -> tuple[tuple[str, ...], Callable[[Event], tuple[Any, ...]]]:
    # Every delivered event asks: reading the fields with one getter made once per
    # class is several times cheaper than attrs.asdict building a dict to rebuild.
    found = _PAYLOADS.get(cls)
    if found is None:
        names = tuple(field.name for field in attrs.fields(cls) if field.name != "exc_info")
        getter = operator.attrgetter(*names)
        found = _PAYLOADS[cls] = (
            names,
            getter if len(names) > 1 else (lambda event: (getter(event),)),
        )
    return found


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
class LibraryModuleLoaded(ModuleLoaded):
    """
    ``module.loaded`` of a module of the standard library or of an installed package
    (when the tracker has no ``include`` patterns): at `TRACE`, below DEBUG.
    """

    level: ClassVar[str] = "trace"


@attrs.frozen
class NamespaceChanged(Event):
    """
    Base of the events that moved a module from one version to another.

    ``added``/``removed``/``changed`` are the names, from ``previous_version``'s
    namespace to ``version``'s: the first `NAME_CAP` of each, sorted, and
    ``added_count``/``removed_count``/``changed_count`` how many there are.
    """

    version: int
    previous_version: int
    origin: str | None
    source_sha256: str | None
    duration_ms: float
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    added_count: int
    removed_count: int
    changed_count: int
    #: The changeset the move belongs to (see `ChangesetApplied`).
    changeset_id: int | None = attrs.field(default=None, kw_only=True)


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

    ``reason`` says why; ``version_reason`` is the restored version's own reason
    (``"import"``, ``"adopted"`` or ``"reload"``).
    """

    event: ClassVar[str] = "module.rolled_back"
    level: ClassVar[str] = "warning"

    version_reason: str


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
    A module's history was dropped: ``reason`` is ``"collected"`` (the module object
    was garbage-collected), ``"replaced"`` (its name now refers to a different module
    object) or ``"forgotten"``.
    """

    event: ClassVar[str] = "module.history_ended"
    level: ClassVar[str] = "debug"

    last_version: int
    reason: str


@attrs.frozen
class ModulePatched(Event):
    """
    An in-place reload updated old functions and classes; ``rebound`` lists those
    that could not be updated and were rebound instead, each as ``"qualname: reason"``
    (the first `NAME_CAP` of each, with their counts).
    """

    event: ClassVar[str] = "module.patched"

    version: int
    patched: tuple[str, ...]
    rebound: tuple[str, ...]
    patched_count: int
    rebound_count: int
    changeset_id: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class CascadeReloaded(Event):
    """
    A cascade was reloaded, all of its modules; ``module`` is its trigger.

    ``adopted`` are the modules of ``modules`` that were not tracked before and were
    adopted to be reloaded.
    """

    event: ClassVar[str] = "cascade.reloaded"

    trigger: str
    modules: tuple[str, ...]
    versions: tuple[int, ...]
    update: str
    duration_ms: float
    adopted: tuple[str, ...] = ()
    changeset_id: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class CascadeFailed(Event):
    """
    A module of a cascade failed; every module of the cascade is as it was before.

    ``undone`` are the modules whose new code had run and was undone, ``skipped``
    the modules not attempted.
    """

    event: ClassVar[str] = "cascade.failed"
    level: ClassVar[str] = "error"

    trigger: str
    modules: tuple[str, ...]
    failed: str
    error: str
    undone: tuple[str, ...]
    skipped: tuple[str, ...]
    duration_ms: float


@attrs.frozen
class GroupReloaded(Event):
    """
    The modules given to `reload_many` were reloaded, all of them; ``module`` is the first.

    ``adopted`` are the modules that were not tracked before and were adopted to be reloaded.
    """

    event: ClassVar[str] = "group.reloaded"

    modules: tuple[str, ...]
    versions: tuple[int, ...]
    update: str
    duration_ms: float
    adopted: tuple[str, ...] = ()
    changeset_id: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class GroupFailed(Event):
    """
    A module given to `reload_many` failed; every module of the group is as it was before.
    """

    event: ClassVar[str] = "group.failed"
    level: ClassVar[str] = "error"

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


@attrs.frozen
class ChangesetApplied(Event):
    """
    An operation that changed modules was recorded as a changeset (see ``changesets()``).

    ``module`` is the first module of ``modules`` (in the order applied), ``kind`` is
    ``"reload"``, ``"rollback"`` or ``"undo"``, ``trigger`` what asked for it. The
    per-module events of the same operation carry the same ``changeset_id``.
    """

    event: ClassVar[str] = "changeset.applied"

    changeset_id: int
    kind: str
    modules: tuple[str, ...]
    trigger: str


@attrs.frozen
class ChangesetUndone(Event):
    """
    The changeset ``changeset_id`` was undone by the ``"undo"`` changeset ``undone_by``:
    every module of ``modules`` is back at its version before it.

    ``kind`` is the undone changeset's kind, ``trigger`` what asked for the undo.
    """

    event: ClassVar[str] = "changeset.undone"
    level: ClassVar[str] = "warning"

    changeset_id: int
    kind: str
    modules: tuple[str, ...]
    trigger: str
    undone_by: int


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
    GroupReloaded,
    GroupFailed,
    ModuleReloadDeferred,
    ChangesetApplied,
    ChangesetUndone,
)

Subscriber = Callable[[Event], object]
#: Which ``module.loaded`` events a subscriber wants: ``(name, origin) -> bool``.
LoadFilter = Callable[[str, "str | None"], bool]


#: The stdlib level numbers of the event levels.
_LEVEL_NUMBERS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

#: Attributes of a `logging.LogRecord`: an event's field of that name is only in
#: ``record.versionload`` (``extra`` may not overwrite them).
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)

#: structlog's configuration the cached decisions were made for, and the decisions
#: (level -> whether structlog lets it through).
_structlog_seen: list[object] = []
_structlog_levels: dict[str, bool] = {}
#: The ``versionload`` logger bound for that configuration, built on first use
#: rather than bound again for every event.
_structlog_bound: list[Any] = []


def _structlog_enabled(level: str) -> bool:
    # configure() replaces these objects, so their identities say whether it ran again
    # (held, not their ids: a new object may reuse a collected one's id). Read from the
    # configuration object itself: get_config() builds a new dict on every call, and
    # under DEBUG logging this runs on every import.
    config = _STRUCTLOG_CONFIG
    if config is not None:
        current = (
            config.default_wrapper_class,
            config.logger_factory,
            config.default_processors,
            config.default_context_class,
        )
    else:
        copied = structlog.get_config()
        current = (
            copied["wrapper_class"],
            copied["logger_factory"],
            copied["processors"],
            copied["context_class"],
        )
    seen = _structlog_seen
    if (
        not seen
        or seen[0] is not current[0]
        or seen[1] is not current[1]
        or seen[2] is not current[2]
        or seen[3] is not current[3]
    ):
        _structlog_levels.clear()
        _structlog_bound.clear()
        seen[:] = current
    known = _structlog_levels.get(level)
    if known is not None:
        return known
    try:
        bound = structlog.get_logger(LOGGER_NAME).bind()
        check = getattr(bound, "is_enabled_for", None) or getattr(bound, "isEnabledFor", None)
        enabled = True if check is None else bool(check(_LEVEL_NUMBERS[level]))
    except Exception:  # noqa: BLE001 - a broken configuration is emit's to report
        enabled = True
    _structlog_levels[level] = enabled
    return enabled


def logs(level: str) -> bool:
    """
    Whether the application's logging lets events of the ``versionload`` logger at
    ``level`` through: structlog's when it is configured, else the standard library's
    (which caches its own answer until its configuration changes).
    """
    if structlog.is_configured():
        return _structlog_enabled(level)
    return _stdlib_logger().isEnabledFor(_LEVEL_NUMBERS[level])


_STDLIB_LOGGER: list[logging.Logger] = []


def _stdlib_logger() -> logging.Logger:
    # Loggers live as long as the process; getLogger takes logging's lock on every call.
    if not _STDLIB_LOGGER:
        _STDLIB_LOGGER.append(logging.getLogger(LOGGER_NAME))
    return _STDLIB_LOGGER[0]


def wanted(subscribers: Iterable[Subscriber], level: str) -> bool:
    """
    Whether an event at ``level`` would reach anybody: a subscriber, or the logging.

    Building an event can cost more than the operation it reports (a reload's diff
    looks at every name), so it is skipped when nobody would receive it.
    """
    return bool(subscribers) or logs(level)


def logs_debug() -> bool:
    """
    Whether the logging lets debug events of the ``versionload`` logger through.

    Asked on every import (as `logs` does, in fewer frames): the standard library's
    answer is cached by ``logging`` itself until its configuration changes.
    """
    config = _STRUCTLOG_CONFIG
    if config is None:
        return logs("debug")
    if config.is_configured:
        # `_structlog_enabled`'s answer while the configuration is the one it saw,
        # read here without its call.
        seen = _structlog_seen
        if (
            seen
            and seen[0] is config.default_wrapper_class
            and seen[1] is config.logger_factory
            and seen[2] is config.default_processors
            and seen[3] is config.default_context_class
        ):
            known = _structlog_levels.get("debug")
            if known is not None:
                return known
        return _structlog_enabled("debug")
    return (_STDLIB_LOGGER[0] if _STDLIB_LOGGER else _stdlib_logger()).isEnabledFor(logging.DEBUG)


#: What ``structlog.is_configured()`` reads, read here without its call (see `logs_debug`).
_STRUCTLOG_CONFIG: Any
try:
    _STRUCTLOG_CONFIG = structlog._config._CONFIG
except AttributeError:  # pragma: no cover - a structlog that keeps it elsewhere: call is_configured()
    _STRUCTLOG_CONFIG = None


def debug_wanted(subscribers: Iterable[Subscriber]) -> bool:
    """
    Whether a debug-level event (a load, a prune) would reach anybody.
    """
    return wanted(subscribers, "debug")


def trace_wanted(subscribers: Iterable[Subscriber]) -> bool:
    """
    Whether a trace-level event (a library module's load) would reach anybody.
    """
    return wanted(subscribers, "trace")


class _Message:
    """
    A stdlib record's message, rendered only when a handler formats it:
    ``module.reloaded app version=3 previous_version=2 ...``.
    """

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: dict[str, Any]) -> None:
        self.name = name
        self.fields = fields

    def __str__(self) -> str:
        module = self.fields.get("module")
        parts = [self.name] if not module else [self.name, str(module)]
        parts.extend(f"{key}={value!r}" for key, value in self.fields.items() if key != "module")
        return " ".join(parts)


def log(
    level: str,
    name: str,
    fields: dict[str, Any],
    exc_info: BaseException | None = None,
    *,
    checked: bool = False,
) -> None:
    """
    Hand one event to the application's logging (structlog if configured, else the
    stdlib's ``versionload`` logger); never prints anything itself, never raises.
    ``checked``: the caller just saw `logs` let ``level`` through.
    """
    try:
        if structlog.is_configured():
            if not checked and not _structlog_enabled(level):
                return
            if not _structlog_bound:
                _structlog_bound.append(structlog.get_logger(LOGGER_NAME).bind())
            logger = _structlog_bound[0]
            # structlog has no trace method: a trace event that its level check let
            # through (a logger at NOTSET, or a stdlib one at TRACE) goes out as debug.
            method = getattr(logger, "debug" if level == "trace" else level)
            if exc_info is None:
                method(name, **fields)
            else:
                method(name, **fields, exc_info=exc_info)
            return
        stdlib = _stdlib_logger()
        number = _LEVEL_NUMBERS[level]
        if not stdlib.isEnabledFor(number):
            return
        if number == TRACE and logging.getLevelName(TRACE) != "TRACE":
            logging.addLevelName(TRACE, "TRACE")
        record_extra = {key: value for key, value in fields.items() if key not in _RECORD_ATTRIBUTES}
        record_extra["event"] = name
        record_extra[LOGGER_NAME] = {"event": name, **fields}
        stdlib.log(number, "%s", _Message(name, fields), extra=record_extra, exc_info=exc_info)
    except Exception as error:  # noqa: BLE001 - reported, not swallowed
        report_error(error, f"versionload: logging {name} failed")


class EventLogger:
    """
    A logger for the log-only events of the wings (``watch.started``...), with the
    level methods of a structlog logger and the routing of `log`.
    """

    def debug(self, name: str, **fields: Any) -> None:
        log("debug", name, fields)

    def info(self, name: str, **fields: Any) -> None:
        log("info", name, fields)

    def warning(self, name: str, **fields: Any) -> None:
        log("warning", name, fields)

    def error(self, name: str, **fields: Any) -> None:
        log("error", name, fields, fields.pop("exc_info", None))


def emit(event: Event, subscribers: Iterable[Subscriber], *, logged: bool | None = None) -> None:
    """
    Send ``event`` to each subscriber and to the application's logging; never raises.
    ``logged``: whether the logging shows it, when the caller just found out (a load).

    A failing subscriber or log processor must not turn a reload that succeeded
    into an exception, so failures are reported through ``sys.unraisablehook``.
    """
    for subscriber in tuple(subscribers):
        try:
            subscriber(event)
        except Exception as error:  # noqa: BLE001 - reported, not swallowed
            report_error(error, f"versionload: subscriber {subscriber!r} failed on {event.event}")
    if logged is not None:
        if logged:
            log(event.level, event.event, event.fields(), event.exc_info, checked=True)
    elif isinstance(event, ModuleLoaded):
        if logs_load(event.level, event.module, event.origin):
            log(event.level, event.event, event.fields(), event.exc_info, checked=True)
    elif logs(event.level):
        log(event.level, event.event, event.fields(), event.exc_info, checked=True)


#: Which module loads the application's logging shows, as set by `filter_load_logs`.
_load_log_filter: list[LoadFilter] = []


def filter_load_logs(loads: LoadFilter | None) -> None:
    """
    Log ``module.loaded`` events only for the loads that ``loads(name, origin)``
    accepts (None: all), for the whole process as the logging configuration is.

    Every import asks it before its event is built, so a program that logs at DEBUG
    but shows only its own modules' loads (``versionload run``) keeps imports cheap.
    """
    _load_log_filter[:] = [] if loads is None else [loads]


def logs_load(level: str, name: str, origin: str | None) -> bool:
    """
    Whether the logging shows the load of ``name`` from ``origin`` at ``level``.
    """
    if not logs(level):
        return False
    return not _load_log_filter or asks(_load_log_filter[0], name, origin)


def asks(loads: LoadFilter, name: str, origin: str | None) -> bool:
    """
    ``loads(name, origin)``, on the import path: a filter that fails counts as wanting
    the load (one event too many rather than one missing) and is reported.
    """
    try:
        return bool(loads(name, origin))
    except Exception as error:  # noqa: BLE001 - user code must not fail an import
        report_error(error, f"versionload: load filter {loads!r} failed")
        return True


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


#: The standard library's directory (where ``os`` lives; read without sysconfig, which
#: would import modules from inside the import hook) and the installed packages' markers.
_STDLIB = os.path.join(os.path.dirname(os.path.realpath(os.__file__)), "")
_PACKAGES = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
#: Whether ``os.path.isabs(path)`` is ``path.startswith(os.sep)`` (posixpath's definition).
_POSIX_PATHS = os.path is posixpath
#: Whether `resolve_file` is ``realpath`` (no case folding), as `is_library` compares.
_RESOLVE_IS_REALPATH = os.path.normcase("A") == "A"


def is_library(origin: str | None) -> bool:
    """
    Whether a module's file belongs to the standard library or an installed package
    (a module without a file, built in or frozen, counts as the standard library's).
    """
    if origin is None or not (origin.startswith(os.sep) if _POSIX_PATHS else os.path.isabs(origin)):
        return True
    if origin.startswith(_STDLIB) or _PACKAGES[0] in origin or _PACKAGES[1] in origin:
        return True
    # Asked for each load somebody wants: the directory is resolved once (`resolve_file`).
    real = resolve_file(origin) if _RESOLVE_IS_REALPATH else os.path.realpath(origin)
    return real.startswith(_STDLIB)
