"""
The exceptions versionload raises.

Every error has one root, so ``except VersionLoadError`` catches all of them, and
each leaf also derives from the standard exception that callers of the import
system already catch::

    VersionLoadError
    ├── InvalidArgumentError        (TypeError, ValueError)
    │   └── NotAModuleError         (TypeError)       not a module or a module name
    ├── NotTrackedError             (LookupError)     the module has no history
    ├── VersionNotFoundError        (LookupError)     no such version in the history
    ├── ChangesetNotFoundError      (LookupError)     no such changeset (or none left to undo)
    ├── ChangesetNotUndoableError   (LookupError)     its versions were pruned, or it was undone
    ├── ReloadError                 (ImportError)     a reload could not run, or failed
    │   ├── ModuleNotLoadedError                      not in sys.modules (or its parent)
    │   ├── SpecNotFoundError       (ModuleNotFoundError)  the finders no longer find it
    │   ├── ReloadRefusedError                        outside the allowed roots, or never reloadable
    │   ├── GroupReloadError                          a module of a cascade or reload_many failed
    │   └── DrainTimeoutError                         serving sections did not end in time
    ├── ServingSectionError         (RuntimeError)    a serving() section left without being entered
    ├── ControlError                (OSError)         the control socket of `versionload run`
    └── PluginError                                   see versionload._plugins.errors

Errors are raised before anything is changed, except ``ReloadError`` for code that
failed while executing, which is raised after the namespace was put back (for
``GroupReloadError``, after every module of the group was put back), and
``ChangesetNotUndoableError`` for an undo whose restore failed, raised after every
module of the changeset was put back.

Every error class lives here, except the plugin host's, which hang below
``PluginError`` in ``versionload/_plugins/errors.py`` (drawn there). Errors pickle with
their attributes.
"""

from __future__ import annotations


class VersionLoadError(Exception):
    """
    The root of every error versionload raises.
    """


class InvalidArgumentError(VersionLoadError, TypeError, ValueError):
    """
    An argument has the wrong type or an impossible value.
    """


class NotAModuleError(InvalidArgumentError):
    """
    The argument is neither a module object nor the name of a loaded module.
    """

    def __init__(self, obj: object) -> None:
        super().__init__(
            f"expected a module or the name of a module in sys.modules, got {type(obj).__name__}: {obj!r}"
        )
        self.obj = obj


class NotTrackedError(VersionLoadError, LookupError):
    """
    The module has no version history in this tracker.
    """

    def __init__(self, module: str) -> None:
        super().__init__(
            f"module {module!r} is not tracked: import it with the hook installed, "
            f"or adopt it with versionload.track()"
        )
        self.module = module


class VersionNotFoundError(VersionLoadError, LookupError):
    """
    The module's history has no version with that number.
    """

    def __init__(
        self, module: str, version: int, available: tuple[int, ...], *, below: int | None = None
    ) -> None:
        shown = ", ".join(map(str, available)) or "none"
        if below is None:
            super().__init__(f"module {module!r} has no version {version} (available: {shown})")
        else:
            # A default rollback asked for no number: name what it looked for instead.
            super().__init__(f"module {module!r} has no version before version {below} (available: {shown})")
        self.module = module
        self.version = version
        self.available = available


class ChangesetNotFoundError(VersionLoadError, LookupError):
    """
    The tracker has no changeset with that id (never made, or dropped from the bounded
    list), or, when no id was given, no changeset left to undo.

    ``changeset`` is the id asked for (None: the default, the latest not undone).

    .. versionadded:: 0.2.0
    """

    def __init__(self, changeset: int | None, available: tuple[int, ...] = ()) -> None:
        shown = ", ".join(map(str, available)) or "none"
        if changeset is None:
            message = f"no changeset left to undo (changesets kept: {shown})"
        else:
            message = f"no changeset {changeset} (changesets kept: {shown})"
        super().__init__(message)
        self.changeset = changeset
        self.available = available

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.changeset, self.available))


class ChangesetNotUndoableError(VersionLoadError, LookupError):
    """
    The changeset cannot be undone: a version it would return a module to was pruned
    (or the module's history ended), or it was undone already. Nothing was changed.

    Also raised when restoring a module failed part-way (its class refused to be
    replaced, say): every module was put back as it was and nothing was recorded;
    the error that stopped it is the ``__cause__``.

    ``changeset`` is its id, ``module`` the first module that stands in the way (None
    when it was undone already), ``reason`` says why.

    .. versionadded:: 0.2.0
    """

    def __init__(self, changeset: int, reason: str, module: str | None = None) -> None:
        super().__init__(f"changeset {changeset} cannot be undone: {reason}")
        self.changeset = changeset
        self.reason = reason
        self.module = module

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.changeset, self.reason, self.module))


class ReloadError(VersionLoadError, ImportError):
    """
    A reload could not run, or the new code failed; the original exception is chained.

    When the module's code failed, its namespace and its ``sys.modules`` entry were
    already put back exactly as they were before the reload started.
    """

    def __init__(self, message: str, *, module: str, path: str | None = None) -> None:
        super().__init__(message, name=module, path=path)
        self.module = module

    def __reduce__(self) -> tuple[object, ...]:
        # ImportError pickles its keyword arguments in a way our signature rejects.
        return (_rebuild, (type(self), str(self), self.module, self.path))


class ModuleNotLoadedError(ReloadError):
    """
    The module (or its parent package) is not in ``sys.modules``, as ``importlib.reload`` reports.
    """


class SpecNotFoundError(ReloadError, ModuleNotFoundError):
    """
    No finder finds the module any more, for example because its file was deleted.
    """


class ReloadRefusedError(ReloadError):
    """
    The module's code, as the finders find it now, lies outside the tracker's allowed
    roots; or the module cannot be reloaded at all (one of versionload's own, an
    extension module, a built-in).

    Raised before the module's code is read or run; the namespace is unchanged.
    """


class GroupReloadError(ReloadError):
    """
    A module of a group reload (a cascade, or `reload_many`) failed; every module of
    the group was put back as it was. ``module`` is the one that failed, ``modules``
    the whole group in order; the failing module's error is chained.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, message: str, *, module: str, modules: tuple[str, ...], path: str | None = None
    ) -> None:
        super().__init__(message, module=module, path=path)
        self.modules = modules

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_group, (str(self), self.module, self.modules, self.path))


def _rebuild_group(message: str, module: str, modules: tuple[str, ...], path: str | None) -> GroupReloadError:
    return GroupReloadError(message, module=module, modules=modules, path=path)


class ServingSectionError(VersionLoadError, RuntimeError):
    """
    A ``serving()`` section was left by a thread (or task) that had not entered it.

    The gate is left as it was: a section count below zero would hide that thread's
    later sections from the changes that wait for them.

    .. versionadded:: 0.2.0
    """


class ControlError(VersionLoadError, OSError):
    """
    The control channel could not be used: no program found, refused, or unsafe.
    """


class DrainTimeoutError(ReloadError):
    """
    Sections of serving code (``versionload.serving()``) were still in flight when the
    tracker's ``drain_timeout`` ran out, so the operation changed nothing.

    ``module`` is the first module the operation would have changed, ``modules`` all of
    them, ``in_flight`` the sections it waited for, ``timeout`` the seconds it waited
    (None: it would have waited forever, but the sections could never end, because they
    belong to operations waiting for each other). A ``module.reload_deferred`` event
    reports the same.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        modules: tuple[str, ...],
        *,
        in_flight: int,
        timeout: float | None,
        deadlock: bool = False,
        message: str | None = None,
    ) -> None:
        if message is None:
            names = ", ".join(repr(name) for name in modules)
            if deadlock:
                why = "they belong to other changes that wait for this thread's sections"
            else:
                why = f"they did not end within {timeout} s"
            message = f"not changing {names}: {in_flight} serving section(s) in flight and {why}"
        super().__init__(message, module=modules[0] if modules else "")
        self.modules = modules
        self.in_flight = in_flight
        self.timeout = timeout

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_drain, (str(self), self.modules, self.in_flight, self.timeout))


def _rebuild_drain(
    message: str, modules: tuple[str, ...], in_flight: int, timeout: float | None
) -> DrainTimeoutError:
    return DrainTimeoutError(modules, in_flight=in_flight, timeout=timeout, message=message)


def _rebuild(cls: type[ReloadError], message: str, module: str, path: str | None) -> ReloadError:
    return cls(message, module=module, path=path)
