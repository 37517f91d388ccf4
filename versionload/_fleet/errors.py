"""
The errors of the fleet wing, in versionload's one error tree::

    VersionLoadError
    └── FleetError
        ├── FleetUnavailableError   (ImportError)      the redis client is not installed
        ├── FleetConnectionError    (ConnectionError)  Redis unreachable, or lost during a command
        ├── FleetBusyError          (RuntimeError)     another operator's command is running
        ├── NoMembersError          (LookupError)      no live member in the group
        └── NothingToUndoError      (LookupError)      the group has no command to undo

Bad arguments raise the core's `InvalidArgumentError`. Messages name the Redis server
only by its redacted URL (no password), so they are safe to log.
"""

from __future__ import annotations

from .._errors import VersionLoadError


class FleetError(VersionLoadError):
    """
    The root of the fleet's errors; ``group`` names the group (None before one is known).
    """

    def __init__(self, message: str, *, group: str | None = None) -> None:
        super().__init__(message)
        self.group = group

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), self.group))


class FleetUnavailableError(FleetError, ImportError):
    """
    The ``redis`` client is not installed: ``pip install 'versionload[fleet]'``.
    """


class FleetConnectionError(FleetError, ConnectionError):
    """
    Redis could not be reached, or the connection was lost during a command.

    A command interrupted this way is not half-applied: each member that applied it
    and never heard the outcome undoes it when it reconnects (see ``docs/fleet.md``).
    """


class FleetBusyError(FleetError, RuntimeError):
    """
    Another command of the same group is still running; fleet commands run one at a time.
    """


class NoMembersError(FleetError, LookupError):
    """
    The group has no live member (no heartbeat), so there is nobody to send a command to.
    """


class NothingToUndoError(FleetError, LookupError):
    """
    `Fleet.undo` found no command of the group to undo.
    """


def _rebuild(cls: type[FleetError], message: str, group: str | None) -> FleetError:
    return cls(message, group=group)
