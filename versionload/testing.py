"""
Helpers for testing code that uses versionload.

The one deliberate public submodule: `capture_events` collects the event payloads a
tracker emits, and `isolated_import_state` gives a test its own installed tracker
and puts the import system back as it was afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator

from ._events import Event
from ._tracker import Tracker, default_tracker


@contextlib.contextmanager
def capture_events(tracker: Tracker | None = None) -> Iterator[list[Event]]:
    """
    Collect every event payload ``tracker`` (default: the default tracker) emits.

    Load events are included: a subscriber counts as somebody listening.

    Example::

        with capture_events() as events:
            versionload.reload(module)
        assert [e.event for e in events] == ["module.reloaded"]

    .. versionadded:: 0.1.0
    """
    if tracker is None:
        tracker = default_tracker()
    events: list[Event] = []
    tracker.subscribe(events.append)
    try:
        yield events
    finally:
        tracker.unsubscribe(events.append)


@contextlib.contextmanager
def isolated_import_state(**settings: object) -> Iterator[Tracker]:
    """
    Run a block with a fresh, installed `Tracker`, then restore the import system.

    ``sys.modules``, ``sys.path``, ``sys.meta_path`` and ``sys.path_importer_cache``
    are put back as they were, so modules the block imported are forgotten.
    ``settings`` go to `Tracker` (``include``, ``exclude``, ``max_versions``).

    .. versionadded:: 0.1.0
    """
    modules = dict(sys.modules)
    path = list(sys.path)
    meta_path = list(sys.meta_path)
    importer_cache = dict(sys.path_importer_cache)
    tracker = Tracker(**settings).install()  # type: ignore[arg-type]
    try:
        yield tracker
    finally:
        tracker.uninstall()
        sys.modules.clear()
        sys.modules.update(modules)
        sys.path[:] = path
        sys.meta_path[:] = meta_path
        sys.path_importer_cache.clear()
        sys.path_importer_cache.update(importer_cache)
        importlib.invalidate_caches()


__all__ = ["capture_events", "isolated_import_state"]
