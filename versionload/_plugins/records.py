"""
Frozen records of the plugin host: a loaded `Plugin`, and a recorded `PluginVersion`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

import attrs


@attrs.frozen(eq=False)
class Plugin:
    """
    A loaded plugin as the host holds it now.

    Compared by identity: ``obj`` may be any object. A reload or rollback makes a new
    `Plugin`; the old record keeps the old ``obj``.

    Attributes:
        name: The entry point's name.
        group: The entry point group.
        value: The entry point's value, ``"module:attr"``.
        distribution: The name of the distribution that provides it (None if unknown).
        dist_version: That distribution's version when this state was loaded.
        obj: What the entry point resolves to in this state.
        modules: The modules of the plugin's unit, in reload order.
        version: The number of this state in `PluginHost.history`.

    .. versionadded:: 0.1.0
    """

    name: str
    group: str
    value: str
    distribution: str | None
    dist_version: str | None
    obj: Any = attrs.field(repr=False)
    modules: tuple[str, ...]
    version: int


def _read_only(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(value))


@attrs.frozen
class PluginVersion:
    """
    One recorded state of a plugin: the version number of each of its modules.

    Attributes:
        plugin: The plugin's name.
        number: 1, 2, 3… per plugin (shared by plugins of one unit); only ever goes up.
        reason: ``"load"`` or ``"reload"``.
        created_at: When the state was recorded (UTC).
        dist_version: The distribution's version in this state.
        modules: Module name -> that module's version number in the tracker.
        ran: The modules whose new code ran to make this state (a reload), in the
            order they ran; empty for a load.

    .. versionadded:: 0.1.0
    """

    plugin: str
    number: int
    reason: Literal["load", "reload"]
    created_at: datetime
    dist_version: str | None
    modules: Mapping[str, int] = attrs.field(converter=_read_only, hash=False)
    ran: tuple[str, ...] = ()
