"""
One reload, rollback or undo reaching every process of a deployment, over Redis, all or none.

Each process joins a group; an operator sends commands to the group::

    member = versionload.fleet.join("redis://localhost:6379/0", group="web")   # in each process
    fleet = versionload.fleet.Fleet("redis://localhost:6379/0", group="web")   # the operator
    result = fleet.reload("app.pricing", timeout=10)
    if not result.ok:
        print(result.failed, result.stragglers)   # and every member is as it was

Only names, version numbers and hashes travel: each member runs the source on its own
disk, within its tracker's ``allowed_roots``. Needs the ``fleet`` extra
(``pip install 'versionload[fleet]'``, the ``redis`` client); ``import versionload``
does not import this module. See ``docs/fleet.md``.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._fleet.errors import (
    FleetBusyError,
    FleetConnectionError,
    FleetError,
    FleetUnavailableError,
    NoMembersError,
    NothingToUndoError,
)
from ._fleet.events import (
    FleetAborted,
    FleetApplied,
    FleetCommandFinished,
    FleetCommandReceived,
    FleetConverged,
    FleetEvent,
    FleetJoined,
    FleetLeft,
    FleetMessageRejected,
    FleetPrepared,
)
from ._fleet.member import DEFAULT_HEARTBEAT, Member
from ._fleet.member import join as _join
from ._fleet.operator import Fleet, FleetResult, MemberInfo, ModuleState
from ._fleet.redisconn import redact_url

if TYPE_CHECKING:
    from ._tracker import Tracker


def join(
    url: str,
    *,
    group: str,
    name: str | None = None,
    tracker: Tracker | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
    include: str | Iterable[str] | None = None,
) -> Member:
    """
    Make this process a member of ``group``: keep a heartbeat and apply the group's commands.

    Connects and subscribes before returning, then converges to the group's target:
    each reported module whose current source hash differs from the target is reloaded
    if this process's disk has the target's bytes (or rolled back to a version that
    had them), and reported as diverged otherwise. Calling it again for the same group
    returns the same member. A process forked from a member joins as itself.

    Args:
        url: The Redis URL (``redis://``, ``rediss://`` for TLS, ``unix://``), with an
            ACL user and password if the server needs them.
        group: The group's name (letters, digits, ``_``, ``.``, ``-``).
        name: How the group knows this process; default ``host:pid``.
        tracker: The tracker the commands act on; default the default tracker
            (``versionload.install()``).
        heartbeat: Seconds between heartbeats; a member is gone after three missed.
        include: Module-name patterns to report and converge; default every tracked
            module whose file is outside the standard library and installed packages.

    Returns:
        The `Member`; ``leave()`` ends the membership.

    Raises:
        InvalidArgumentError: a bad URL, group, name or heartbeat; or the process is
            already a member of ``group`` with another tracker.
        FleetUnavailableError: the ``redis`` client is not installed.
        FleetConnectionError: Redis cannot be reached, or refused the credentials.
    """
    return _join(url, group=group, name=name, tracker=tracker, heartbeat=heartbeat, include=include)


__all__ = [
    "DEFAULT_HEARTBEAT",
    "Fleet",
    "FleetAborted",
    "FleetApplied",
    "FleetBusyError",
    "FleetCommandFinished",
    "FleetCommandReceived",
    "FleetConnectionError",
    "FleetConverged",
    "FleetError",
    "FleetEvent",
    "FleetJoined",
    "FleetLeft",
    "FleetMessageRejected",
    "FleetPrepared",
    "FleetResult",
    "FleetUnavailableError",
    "Member",
    "MemberInfo",
    "ModuleState",
    "NoMembersError",
    "NothingToUndoError",
    "join",
    "redact_url",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("versionload._fleet"):
        _obj.__module__ = __name__
del _name, _obj
