"""
``docs/events.md`` is the schema of the events: every payload class has exactly the
fields it lists, at the level it names, and what is logged has exactly those keys.

A new payload class (of the core, the plugin host or the fleet) without its section
in the page fails here, naming the class and the heading to add.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import attrs
import pytest
from structlog.testing import capture_logs

import versionload
import versionload.testing
from versionload._events import EVENT_TYPES, Event, LibraryModuleLoaded
from versionload._fleet.events import FLEET_EVENT_TYPES
from versionload._plugins.events import PLUGIN_EVENT_TYPES

from .helpers import ModuleTree

PAGE = Path(__file__).resolve().parent.parent / "docs" / "events.md"
HEADING = re.compile(r"^#{2,3} (?P<title>.+)$")
EVENT_HEADING = re.compile(r"^`(?P<name>[a-z_]+\.[a-z_]+)` \((?P<levels>[a-z; ]+)\)$")
FAMILY_HEADING = re.compile(r"^Fields of every `(?P<pattern>[a-z_.*]+)` event$")
ROW = re.compile(r"^\|(?P<first>[^|]+)\|")
FIELD = re.compile(r"`([a-z_0-9]+)`")

ALL_TYPES: tuple[type[Event], ...] = (
    *EVENT_TYPES,
    LibraryModuleLoaded,
    *PLUGIN_EVENT_TYPES,
    *FLEET_EVENT_TYPES,
)


def _sections() -> dict[str, list[str]]:
    """
    Each ``##``/``###`` heading's title and the field names of its table's rows.
    """
    sections: dict[str, list[str]] = {}
    title = ""
    for line in PAGE.read_text().splitlines():
        heading = HEADING.match(line)
        if heading is not None:
            title = heading["title"].strip()
            sections.setdefault(title, [])
            continue
        row = ROW.match(line)
        if row is not None and title and not set(row["first"].strip()) <= set("-"):
            sections[title].extend(FIELD.findall(row["first"]))
    return sections


def documented() -> dict[str, tuple[set[str], set[str]]]:
    """
    Event name -> (its documented fields, the levels its heading names).
    """
    sections = _sections()
    common = set(sections["Fields every event has"])
    families = {
        match["pattern"]: set(fields)
        for title, fields in sections.items()
        if (match := FAMILY_HEADING.match(title)) is not None
    }
    schema = {}
    for title, fields in sections.items():
        match = EVENT_HEADING.match(title)
        if match is None:
            continue
        name = match["name"]
        names = common | set(fields)
        for pattern, extra in families.items():
            if fnmatch.fnmatchcase(name, pattern):
                names |= extra
        schema[name] = (names, {level.strip() for level in match["levels"].split(";")})
    return schema


def payload_fields(kind: type[Event]) -> set[str]:
    return {field.name for field in attrs.fields(kind)} - {"exc_info"}


class TestDocumentedSchema:
    """
    Every payload class against its section of docs/events.md.
    """

    @pytest.mark.parametrize("kind", ALL_TYPES, ids=lambda kind: kind.__name__)
    def test_fields_match(self, kind: type[Event]) -> None:
        """
        A payload class has exactly the fields its section (plus the common and family tables) lists.
        """
        schema = documented()
        assert kind.event in schema, (
            f"{kind.__module__}.{kind.__name__} ({kind.event!r}) is not documented: add a section "
            f"'### `{kind.event}` ({kind.level})' with a table of its fields to docs/events.md"
        )
        fields, _ = schema[kind.event]

        assert sorted(fields) == sorted(payload_fields(kind)), f"docs/events.md, {kind.event}"

    @pytest.mark.parametrize("kind", ALL_TYPES, ids=lambda kind: kind.__name__)
    def test_level_matches(self, kind: type[Event]) -> None:
        """
        The heading names the payload class's level.
        """
        _, levels = documented()[kind.event]

        assert kind.level in levels

    def test_every_documented_event_exists(self) -> None:
        """
        No section documents an event that no payload class emits.
        """
        names = {kind.event for kind in ALL_TYPES}

        assert [] == sorted(set(documented()) - names)

    def test_new_class_without_docs_fails_clearly(self) -> None:
        """
        The check names an undocumented payload class (this is what a new event meets).
        """

        @attrs.frozen
        class Invented(Event):
            event = "invented.happened"

        assert Invented.event not in documented()

    def test_every_event_has_a_reason(self) -> None:
        """
        Every payload class has the ``reason`` field.
        """
        assert [] == [kind.__name__ for kind in ALL_TYPES if "reason" not in payload_fields(kind)]


def _keys(entry: dict[str, object]) -> set[str]:
    return set(entry) - {"event", "log_level", "exc_info"}


class TestLoggedDicts:
    """
    What real operations log has exactly the documented keys.
    """

    def test_core_operations(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Loads, reloads (plain, cascade, group, in-place), failures, rollbacks, prunes log the schema's keys.
        """
        schema = documented()
        tracker.configure(max_versions=3)
        base = tree.module("sch_base", "def f():\n    return 1\n")
        tree.module("sch_user", "import sch_base\nG = 1\n")
        with capture_logs() as logs:
            import sch_user  # noqa: F401

            base.write_text("def f():\n    return 2\n")
            tracker.reload("sch_base", cascade=True)
            tracker.reload_many(["sch_base", "sch_user"])
            tracker.reload("sch_base", update="in-place")
            base.write_text("raise ValueError('x')\n")
            with pytest.raises(versionload.ReloadError):
                tracker.reload("sch_base")
            with pytest.raises(versionload.GroupReloadError):
                tracker.reload_many(["sch_user", "sch_base"])
            with pytest.raises(versionload.GroupReloadError):
                tracker.reload("sch_base", cascade=True)
            tracker.rollback("sch_base")
        seen = {entry["event"] for entry in logs}

        assert {
            "module.loaded",
            "module.reloaded",
            "cascade.reloaded",
            "group.reloaded",
            "module.patched",
            "module.reload_failed",
            "group.failed",
            "cascade.failed",
            "module.rolled_back",
            "version.pruned",
        } <= seen
        for entry in logs:
            assert (entry["event"], sorted(schema[str(entry["event"])][0])) == (
                entry["event"],
                sorted(_keys(entry)),
            )

    def test_cascade_dependents_say_cascade(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        In a cascade the trigger's reload is ``requested`` and its dependents' are ``cascade``.
        """
        tree.module("sch_a", "X = 1\n")
        tree.module("sch_b", "import sch_a\n")
        import sch_b  # noqa: F401

        with versionload.testing.capture_events(tracker) as events:
            tracker.reload("sch_a", cascade=True)

        assert [("sch_a", "requested"), ("sch_b", "cascade")] == [
            (event.module, event.reason) for event in events if event.event == "module.reloaded"
        ]

    def test_name_lists_are_capped(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A reload that adds 1,000 names logs the first 20 and the count.
        """
        path = tree.module("sch_big", "X = 1\n")
        import sch_big  # noqa: F401

        path.write_text("".join(f"N{i:04} = {i}\n" for i in range(1000)))
        with capture_logs() as logs:
            tracker.reload("sch_big")
        (entry,) = [e for e in logs if e["event"] == "module.reloaded"]

        assert ([f"N{i:04}" for i in range(20)], 1000) == (entry["added"], entry["added_count"])
        assert 1000 == len(tracker.diff("sch_big", 1, 2).added)
