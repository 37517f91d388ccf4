"""
The shortcuts the benchmarks led to change nothing anybody can observe: code reused
for identical source, the bytecode cache left alone when it already holds our code,
events built only for listeners, and first imports queued while nobody listens.
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import importlib.util
import logging
import marshal
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

import versionload
from versionload._arguments import lies_under, resolve, resolve_directory_of, resolve_file
from versionload._events import filter_load_logs

from .helpers import ModuleTree


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cached_value(source_path: str, name: str) -> Any:
    """
    Execute the code in the bytecode cache of ``source_path`` and return ``name`` from it.
    """
    with open(importlib.util.cache_from_source(source_path), "rb") as cache:
        code = marshal.loads(cache.read()[16:])
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace[name]


class TestCompiledCodeReuse:
    """
    Reloads of unchanged source reuse the code compiled from the same bytes.
    """

    def test_unchanged_source_runs_the_same_code_object(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Two reloads of the same bytes run one code object: no second compile.
        """
        tree.module("fp_same", "def f():\n    return 1\n")
        import fp_same  # type: ignore[import-not-found]

        tracker.reload(fp_same)
        first = fp_same.f
        tracker.reload(fp_same)

        assert first is not fp_same.f
        assert first.__code__ is fp_same.f.__code__

    def test_edit_invisible_to_the_cache_check_still_runs_new_code(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        After a reload filled the reuse table, a same-size, same-mtime edit still runs.
        """
        path = tree.module("fp_stat", "VALUE = 1\n")
        import fp_stat  # type: ignore[import-not-found]

        tracker.reload(fp_stat)
        tree.edit_keeping_stat(path, "VALUE = 2\n")
        tracker.reload(fp_stat)

        assert 2 == fp_stat.VALUE

    def test_cache_overwritten_by_others_is_rewritten(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A stale cache written by someone else after our reload is replaced at the next reload.
        """
        sys.dont_write_bytecode = False
        path = tree.module("fp_cache", "VALUE = 1\n")
        import fp_cache  # type: ignore[import-not-found]

        cache = Path(importlib.util.cache_from_source(str(path)))
        stale = cache.read_bytes()
        tree.edit_keeping_stat(path, "VALUE = 2\n")
        tracker.reload(fp_cache)
        assert 2 == _cached_value(str(path), "VALUE")
        # Another process writes the old code with a header that still passes the check.
        cache.write_bytes(stale)
        tracker.reload(fp_cache)

        assert 2 == _cached_value(str(path), "VALUE")


class TestBytecodeCacheLeftToTheLoader:
    """
    A reload rewrites only a cache the loader would still run; any other it leaves
    to the next import, which compiles the source and writes the cache itself.
    """

    def test_cache_the_loader_rejects_is_left_alone(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        After an edit that changes the size, the old cache is untouched and the next import runs the new code.
        """
        sys.dont_write_bytecode = False
        path = tree.module("fp_rejected", "VALUE = 1\n")
        import fp_rejected  # type: ignore[import-not-found]

        cache = Path(importlib.util.cache_from_source(str(path)))
        before = (cache.read_bytes(), cache.stat().st_ino, cache.stat().st_mtime_ns)
        tree.module("fp_rejected", "VALUE = 222\n")
        tracker.reload(fp_rejected)
        assert 222 == fp_rejected.VALUE
        after = (cache.read_bytes(), cache.stat().st_ino, cache.stat().st_mtime_ns)
        del sys.modules["fp_rejected"]
        reimported = importlib.import_module("fp_rejected")

        assert (before, 222, 222) == (after, reimported.VALUE, _cached_value(str(path), "VALUE"))

    def test_missing_cache_is_written_by_the_next_import(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        With no cache, a reload writes none; the next import compiles and writes it.
        """
        path = tree.module("fp_nocache", "VALUE = 1\n")
        import fp_nocache  # type: ignore[import-not-found]

        sys.dont_write_bytecode = False
        cache = Path(importlib.util.cache_from_source(str(path)))
        assert not cache.exists()
        tree.module("fp_nocache", "VALUE = 22\n")
        tracker.reload(fp_nocache)
        written_by_reload = cache.exists()
        del sys.modules["fp_nocache"]
        reimported = importlib.import_module("fp_nocache")

        assert (False, 22, 22) == (written_by_reload, reimported.VALUE, _cached_value(str(path), "VALUE"))


class TestEventsForListenersOnly:
    """
    Events are skipped only when the log level would drop them and nobody subscribed.
    """

    def test_levels_decide_which_events_are_logged(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        At WARNING a reload logs nothing and a rollback logs its full diff.
        """
        path = tree.module("fp_levels", "A = 1\nB = [1]\n")
        import fp_levels  # type: ignore[import-not-found]

        logged: list[dict[str, Any]] = []

        def capture(logger: object, method: str, event_dict: dict[str, Any]) -> Any:
            logged.append(dict(event_dict))
            raise structlog.DropEvent

        structlog.configure(
            processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
        )
        path.write_text("A = 1\nC = 2\nB = [2]\n")
        tracker.reload(fp_levels)
        tracker.rollback(fp_levels)

        assert [("module.rolled_back", ["C"], [], ["B"])] == [
            (entry["event"], entry["removed"], entry["added"], entry["changed"]) for entry in logged
        ]

    def test_reconfigured_structlog_gets_the_next_event(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Each event goes through the configuration structlog has when it is logged.
        """
        path = tree.module("fp_reconf", "A = 1\n")
        import fp_reconf  # type: ignore[import-not-found]

        first: list[str] = []
        second: list[str] = []

        def into(sink: list[str]) -> Any:
            def capture(logger: object, method: str, event_dict: dict[str, Any]) -> Any:
                sink.append(event_dict["event"])
                raise structlog.DropEvent

            return capture

        structlog.configure(
            processors=[into(first)], wrapper_class=structlog.make_filtering_bound_logger(logging.INFO)
        )
        path.write_text("A = 2\n")
        tracker.reload(fp_reconf)
        structlog.configure(processors=[into(second)])
        tracker.rollback(fp_reconf)

        assert (["module.reloaded", "changeset.applied"], ["module.rolled_back", "changeset.applied"]) == (
            first,
            second,
        )

    def test_load_log_filter_decides_which_loads_are_logged(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        At DEBUG with a load log filter (as `versionload run` sets), only accepted loads log;
        a declined one is still recorded as version 1.
        """
        tree.module("fp_ll_in", "A = 1\n")
        tree.module("fp_ll_out", "A = 1\n")
        logged: list[str] = []

        def capture(logger: object, method: str, event_dict: dict[str, Any]) -> Any:
            if event_dict["event"] == "module.loaded":
                logged.append(event_dict["module"])
            raise structlog.DropEvent

        structlog.configure(
            processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG)
        )
        filter_load_logs(lambda name, origin: name == "fp_ll_in")
        import fp_ll_in  # type: ignore[import-not-found]  # noqa: F401
        import fp_ll_out  # type: ignore[import-not-found]  # noqa: F401

        assert ["fp_ll_in"] == [name for name in logged if name.startswith("fp_ll_")]
        assert (1, 1) == (tracker.current("fp_ll_in").number, tracker.current("fp_ll_out").number)

    def test_subscriber_gets_reload_event_when_logging_drops_it(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A subscriber receives the reload event even when structlog would drop it.
        """
        path = tree.module("fp_sub", "A = 1\n")
        import fp_sub  # type: ignore[import-not-found]

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        path.write_text("A = 1\nB = 2\n")
        tracker.reload(fp_sub)

        assert [("B",)] == [e.added for e in events if isinstance(e, versionload.ModuleReloaded)]


Diff = tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def _diffs(events: list[versionload.Event]) -> list[Diff]:
    """
    Each reload or rollback event as (event, added, removed, changed).
    """
    return [
        (event.event, event.added, event.removed, event.changed)
        for event in events
        if isinstance(event, (versionload.ModuleReloaded, versionload.ModuleRolledBack))
    ]


class TestRollbackReusesTheReloadDiff:
    """
    A rollback's event reads the diff its versions' reload computed, and only when the
    namespace still holds exactly the version it leaves.
    """

    def test_rollback_event_is_the_reload_diff_backwards(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        Back and forth between two versions: each event lists what a fresh comparison does.
        """
        path = tree.module("fp_rb_back", "A = 1\nB = [1]\nD = 4\n")
        import fp_rb_back  # type: ignore[import-not-found]

        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        path.write_text("A = 1\nB = [2]\nC = 3\n")
        tracker.reload(fp_rb_back, prune=True)
        tracker.rollback(fp_rb_back, to=1)
        tracker.rollback(fp_rb_back, to=2)

        assert [
            ("module.reloaded", ("C",), ("D",), ("B",)),
            ("module.rolled_back", ("D",), ("C",), ("B",)),
            ("module.rolled_back", ("C",), ("D",), ("B",)),
        ] == _diffs(events)

    def test_names_rebound_since_the_reload_are_in_the_event(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A name the program rebound or added after the reload shows in the rollback's diff.
        """
        path = tree.module("fp_rb_rebound", "A = 1\nB = [1]\n")
        import fp_rb_rebound  # type: ignore[import-not-found]

        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        path.write_text("A = 1\nB = [2]\nC = 3\n")
        tracker.reload(fp_rb_rebound)
        fp_rb_rebound.A = "rebound"
        fp_rb_rebound.E = 5
        tracker.rollback(fp_rb_rebound)

        assert ("module.rolled_back", (), ("C", "E"), ("A", "B")) == _diffs(events)[-1]
        assert 1 == fp_rb_rebound.A

    def test_submodule_bound_before_the_reload_stays(
        self, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A submodule imported between the two versions stays an attribute of its package.
        """
        tree.write({"fp_rb_pkg/__init__.py": "A = 1\n", "fp_rb_pkg/sub.py": "S = 1\n"})
        init = tree.path("fp_rb_pkg/__init__.py")
        import fp_rb_pkg  # type: ignore[import-not-found]
        import fp_rb_pkg.sub  # type: ignore[import-not-found]

        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        init.write_text("A = 2\n")
        tracker.reload(fp_rb_pkg)
        tracker.rollback(fp_rb_pkg)

        assert sys.modules["fp_rb_pkg.sub"] is fp_rb_pkg.sub
        assert 1 == fp_rb_pkg.A
        assert [
            ("module.reloaded", ("sub",), (), ("A",)),
            ("module.rolled_back", (), (), ("A",)),
        ] == _diffs(events)


class TestQueuedImports:
    """
    First imports recorded while nobody listens become histories on the next operation.
    """

    def test_histories_in_import_order(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Queued imports become version 1 of each module, in the order they were imported.
        """
        tree.write(
            {
                "fp_order/__init__.py": "from . import b, a\n",
                "fp_order/a.py": "X = 1\n",
                "fp_order/b.py": "Y = 2\n",
            }
        )
        __import__("fp_order")

        assert ("fp_order.b", "fp_order.a", "fp_order") == tracker.tracked()
        assert {"import"} == {tracker.current(m).reason for m in tracker.tracked()}
        assert 2 == tracker.current("fp_order.b").bindings["Y"]

    def test_collected_before_anybody_looked_keeps_numbering(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A module imported, dropped and collected unseen still used up version 1.
        """
        tree.module("fp_gone", "X = 1\n")
        __import__("fp_gone")
        del sys.modules["fp_gone"]
        gc.collect()
        module = __import__("fp_gone")

        assert (2,) == tuple(v.number for v in tracker.history(module))

    def test_subscriber_sees_loads_at_once(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        With a subscriber the import is recorded at once and reported.
        """
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        tree.module("fp_seen", "X = 1\n")
        __import__("fp_seen")

        assert [("fp_seen", 1)] == [
            (e.module, e.version) for e in events if isinstance(e, versionload.ModuleLoaded)
        ]

    def test_forget_drops_queued_import(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        Forgetting a module whose import is still queued forgets it for good.
        """
        tree.module("fp_forget", "X = 1\n")
        __import__("fp_forget")

        assert tracker.forget("fp_forget")
        assert "fp_forget" not in tracker.tracked()


_COMPILED_FILES: list[str] = []


def _note_compiles(event: str, args: tuple[Any, ...]) -> None:
    if event == "compile" and len(args) >= 2 and isinstance(args[1], str):
        _COMPILED_FILES.append(args[1])


sys.addaudithook(_note_compiles)


class TestFirstReloadFromProvenCache:
    """
    The first reload of an unchanged module runs a bytecode cache proven to hold its source.
    """

    def test_fresh_cache_serves_the_first_reload(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A .pyc written well after the source's last change is run, not compiled again.
        """
        sys.dont_write_bytecode = False
        path = tree.module("fp_proven", "VALUE = 'aaa'\n")
        # Far enough apart for any filesystem clock to order the two files.
        time.sleep(0.1)
        import fp_proven  # type: ignore[import-not-found]

        _COMPILED_FILES.clear()
        tracker.reload(fp_proven)

        assert [] == [name for name in _COMPILED_FILES if name == str(path)]
        assert "aaa" == fp_proven.VALUE
        assert _sha256(b"VALUE = 'aaa'\n") == tracker.current(fp_proven).source_sha256

    def test_cache_of_a_same_second_edit_is_not_trusted(
        self, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        After an edit that keeps size and mtime, the first reload compiles and runs the new source.
        """
        sys.dont_write_bytecode = False
        path = tree.module("fp_unproven", "VALUE = 'aaa'\n")
        time.sleep(0.1)
        import fp_unproven  # type: ignore[import-not-found]

        tree.edit_keeping_stat(path, "VALUE = 'bbb'\n")
        _COMPILED_FILES.clear()
        tracker.reload(fp_unproven)

        assert [str(path)] == [name for name in _COMPILED_FILES if name == str(path)]
        assert "bbb" == fp_unproven.VALUE


def _commonpath_under(real: str, roots: tuple[str, ...]) -> bool:
    # `is_under`'s comparison as it was, with os.path.commonpath.
    for root in roots:
        try:
            if os.path.commonpath([real, root]) == root:
                return True
        except ValueError:
            continue
    return False


_COMPONENTS = st.sampled_from(["a", "b", "ab", ".", "..", "", "a.py", ".hidden"])


class TestPathsResolvedOncePerDirectory:
    """
    The path rule's import-path forms (`resolve_file`, `resolve_directory_of`,
    `lies_under`) answer as ``realpath`` and ``commonpath`` do.
    """

    @settings(max_examples=400, deadline=None)
    @given(
        real=st.lists(_COMPONENTS, max_size=5).map(lambda parts: "/" + "/".join(parts)),
        roots=st.lists(
            st.lists(_COMPONENTS, max_size=4).map(lambda parts: "/" + "/".join(parts))
            | st.sampled_from(["a/b", "", "/a/b/", "//a"]),
            min_size=1,
            max_size=3,
        ).map(tuple),
    )
    def test_lies_under_is_commonpath(self, real: str, roots: tuple[str, ...]) -> None:
        """
        For any paths (plain or not), the comparison is commonpath's.
        """
        assert _commonpath_under(real, roots) == lies_under(real, roots)

    def test_files_resolve_as_realpath_through_symlinks(self, tmp_path: Path) -> None:
        """
        Directories and files reached through symlinks, "..", "." and doubled separators
        resolve as ``realpath`` resolves them, asked twice (the second time from the cache).
        """
        (tmp_path / "real" / "pkg" / "sub").mkdir(parents=True)
        (tmp_path / "out").mkdir()
        (tmp_path / "real" / "pkg" / "sub" / "m.py").write_text("")
        (tmp_path / "out" / "o.py").write_text("")
        (tmp_path / "link").symlink_to(tmp_path / "real")
        (tmp_path / "real" / "pkg" / "sub" / "l.py").symlink_to(tmp_path / "out" / "o.py")
        (tmp_path / "real" / "pkg" / "outdir").symlink_to(tmp_path / "out")
        base = str(tmp_path)
        paths = [
            f"{base}/link/pkg/sub/m.py",
            f"{base}/real/pkg/sub/m.py",
            f"{base}/link/pkg/sub/l.py",
            f"{base}/real/pkg/outdir/o.py",
            f"{base}/link/pkg/outdir/o.py",
            f"{base}/real/pkg/../pkg/sub/m.py",
            f"{base}/real//pkg/sub/m.py",
            f"{base}/real/./pkg/sub/m.py",
            f"{base}/real/pkg/sub/.",
            f"{base}/nowhere/x.py",
            "/m.py",
            "relative/m.py",
        ]
        for _ in range(2):
            for path in paths:
                assert (resolve(path), resolve(os.path.dirname(path))) == (
                    resolve_file(path),
                    resolve_directory_of(path),
                ), path


class TestRunJsonLines:
    """
    ``versionload run --json``'s one processor writes what its five processors wrote.
    """

    def test_lines_are_those_of_the_processor_chain(self, tmp_path: Path) -> None:
        """
        Loads inside and outside the roots, other debug events, warnings, exceptions and
        values JSON cannot encode give the same lines, but for the timestamps' values.
        """
        from versionload._live import cli

        root = tmp_path / "root"
        root.mkdir()
        under, _ = cli._under_roots((str(root),))

        def only_watched_loads(_: Any, __: str, event: Any) -> Any:
            if event.get("level") == "debug" and not under(event.get("origin")):
                raise structlog.DropEvent
            return event

        chain = [
            structlog.processors.add_log_level,
            only_watched_loads,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
        one = cli._json_lines(under)

        class Thing:
            def __repr__(self) -> str:
                return "<thing>"

        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError as error:
            failure = error
        events: list[tuple[str, dict[str, Any]]] = [
            ("debug", {"event": "module.loaded", "module": "m", "origin": str(root / "m.py"), "names": 2}),
            ("debug", {"event": "module.loaded", "module": "x", "origin": "/elsewhere/x.py"}),
            ("debug", {"event": "version.pruned", "module": "m", "version": 1}),
            ("info", {"event": "watch.started", "roots": [str(root)], "backend": "polling"}),
            ("warning", {"event": "w", "thing": Thing(), "text": "é\u2028", "number": 1.5}),
            ("warn", {"event": "w2"}),
            ("error", {"event": "boom", "exc_info": failure}),
            ("error", {"event": "e", "exc_info": None}),
            ("exception", {"event": "e2", "exc_info": False}),
            ("info", {"event": "t", "timestamp": "given"}),
        ]
        for method, event in events:
            lines = []
            for processors in (chain, [one]):
                fields = dict(event)
                try:
                    for processor in processors:
                        fields = processor(None, method, fields)
                except structlog.DropEvent:
                    lines.append(None)
                else:
                    lines.append(re.sub(r'"timestamp": "[^"]*"', "T", str(fields)))
            assert lines[0] == lines[1], (method, event)

    @pytest.mark.parametrize(
        "now_ns",
        [
            0,
            1_000_000_000,
            1_764_584_409_123_456_789,
            1_764_584_409_000_000_000,
            1_764_584_409_000_999,
            -1_500_000_001,
        ],
    )
    def test_timestamps_are_those_of_the_timestamper(self, now_ns: int) -> None:
        """
        The text of a moment is ``datetime.isoformat()``'s with ``Z``, microseconds floored.
        """
        from versionload._live.cli import utc_timestamp

        seconds, micros = divmod(now_ns // 1000, 1_000_000)
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).replace(
            microsecond=micros
        )
        assert moment.isoformat().replace("+00:00", "Z") == utc_timestamp(now_ns)

    def test_a_timestamp_now_is_the_timestampers_format(self) -> None:
        """
        Now, both write the same format, and about the same moment.
        """
        stamped = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
        from versionload._live.cli import utc_timestamp

        pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z"
        assert re.fullmatch(pattern, stamped)
        assert re.fullmatch(pattern, utc_timestamp())
        assert abs(
            datetime.datetime.fromisoformat(stamped.replace("Z", "+00:00"))
            - datetime.datetime.fromisoformat(utc_timestamp().replace("Z", "+00:00"))
        ) < datetime.timedelta(seconds=5)
