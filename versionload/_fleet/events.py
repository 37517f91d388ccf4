"""
The fleet's event payloads: what each member reports, and the operator's outcome.

Members emit through their tracker (to its subscribers and the ``versionload``
structlog logger); the operator logs `FleetCommandFinished` to structlog. Fields are
flat and JSON-friendly; ``module`` is the command's first module ("" when the event is
about the member rather than a module). ``command`` is the command's id. No field ever
holds a Redis URL. Documented in ``docs/events.md``.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from .._events import Event


@attrs.frozen
class FleetEvent(Event):
    """
    Base of the fleet's events: the group and the member (``host:pid`` or its name).

    .. versionadded:: 0.2.0
    """

    group: str
    member: str


@attrs.frozen
class FleetJoined(FleetEvent):
    """
    This process joined a group and listens for its commands.
    """

    event: ClassVar[str] = "fleet.joined"

    host: str
    pid: int
    modules: tuple[str, ...]


@attrs.frozen
class FleetLeft(FleetEvent):
    """
    This process left a group: its heartbeat is gone and it no longer listens.
    """

    event: ClassVar[str] = "fleet.left"
    level: ClassVar[str] = "debug"


@attrs.frozen
class FleetCommandReceived(FleetEvent):
    """
    A valid command message arrived (``phase``: prepare, commit, abort or done).
    """

    event: ClassVar[str] = "fleet.command_received"
    level: ClassVar[str] = "debug"

    command: str
    op: str
    phase: str
    modules: tuple[str, ...]


@attrs.frozen
class FleetPrepared(FleetEvent):
    """
    This member checked a command against its own disk and history; nothing changed.

    ``ready`` says whether it can apply it; ``error`` says why not.
    """

    event: ClassVar[str] = "fleet.prepared"

    command: str
    op: str
    modules: tuple[str, ...]
    ready: bool
    source_sha256: tuple[str, ...]
    error: str | None


@attrs.frozen
class FleetApplied(FleetEvent):
    """
    This member applied a command through its tracker; ``versions`` are the new current ones.
    """

    event: ClassVar[str] = "fleet.applied"

    command: str
    op: str
    modules: tuple[str, ...]
    versions: tuple[int, ...]


@attrs.frozen
class FleetAborted(FleetEvent):
    """
    A command this member prepared or applied was called off; ``undone`` are the modules
    it put back (to their versions before the command), ``reason`` why.
    """

    event: ClassVar[str] = "fleet.aborted"
    level: ClassVar[str] = "warning"

    command: str
    op: str
    modules: tuple[str, ...]
    undone: tuple[str, ...]
    reason: str


@attrs.frozen
class FleetConverged(FleetEvent):
    """
    This member compared a module with the group's target: ``status`` is ``"converged"``
    (it now runs the target's bytes) or ``"diverged"`` (its disk has other bytes, so it
    keeps its version and reports the difference in its heartbeat).
    """

    event: ClassVar[str] = "fleet.converged"

    status: str
    version: int
    target_sha256: str
    disk_sha256: str | None


@attrs.frozen
class FleetMessageRejected(FleetEvent):
    """
    A message on the group's channel was malformed or not allowed; it was ignored.
    """

    event: ClassVar[str] = "fleet.message_rejected"
    level: ClassVar[str] = "warning"

    reason: str
    size: int


@attrs.frozen
class FleetCommandFinished(Event):
    """
    The operator's outcome of a command (logged by `Fleet`, not by members).
    """

    event: ClassVar[str] = "fleet.command_finished"

    group: str
    command: str
    op: str
    modules: tuple[str, ...]
    ok: bool
    applied: tuple[str, ...]
    failed: tuple[str, ...]
    stragglers: tuple[str, ...]
    rolled_back: tuple[str, ...]
    duration_ms: float


FLEET_EVENT_TYPES: tuple[type[Event], ...] = (
    FleetJoined,
    FleetLeft,
    FleetCommandReceived,
    FleetPrepared,
    FleetApplied,
    FleetAborted,
    FleetConverged,
    FleetMessageRejected,
    FleetCommandFinished,
)
