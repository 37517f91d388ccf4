"""
Events go where the application's logs already go: the standard library's logging
when structlog is not configured, structlog when it is; never on stdout.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

import versionload

from .helpers import ModuleTree


@pytest.fixture(name="versionload_logger")
def _versionload_logger() -> Iterator[logging.Logger]:
    """
    The stdlib ``versionload`` logger, put back as it was (level, handlers, propagation).
    """
    logger = logging.getLogger("versionload")
    saved = (logger.level, list(logger.handlers), logger.propagate)
    try:
        yield logger
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate = saved[2]


def _run(tmp_path: Path, program: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "program.py").write_text(textwrap.dedent(program))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return subprocess.run(
        [sys.executable, "program.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


_BASIC_CONFIG_APP = """
import logging, pathlib
import versionload

logging.basicConfig(filename="app.log", level=logging.{level}, format="%(levelname)s %(name)s %(message)s")
versionload.install()
import json, colorsys, wave  # modules no tool of the test run imports first
import lg_mod
path = pathlib.Path(lg_mod.__file__)
path.write_text("X = 2\\n")
versionload.reload(lg_mod)
path.write_text("X = 3\\nraise ValueError('nope')\\n")
try:
    versionload.reload(lg_mod)
except versionload.ReloadError:
    pass
versionload.rollback(lg_mod)
"""


class TestStdlibApplication:
    """
    A program that configures only the standard library's logging.
    """

    def test_basic_config_file_gets_the_events(self, tmp_path: Path) -> None:
        """
        basicConfig(filename=...) gets reload, failure (with traceback) and rollback; stdout is empty.
        """
        (tmp_path / "lg_mod.py").write_text("X = 1\n")

        result = _run(tmp_path, _BASIC_CONFIG_APP.format(level="INFO"))

        assert (0, "", "") == (result.returncode, result.stdout, result.stderr)
        lines = (tmp_path / "app.log").read_text().splitlines()
        events = [line.split(" ")[2] for line in lines if line.split(" ")[1:2] == ["versionload"]]
        assert [
            "module.reloaded",
            "changeset.applied",
            "module.reload_failed",
            "module.rolled_back",
            "changeset.applied",
        ] == events
        assert "Traceback (most recent call last):" in lines
        assert "ValueError: nope" in lines

    def test_debug_lists_own_imports_only(self, tmp_path: Path) -> None:
        """
        At DEBUG the program's own module's load is logged, the standard library's are not.
        """
        (tmp_path / "lg_mod.py").write_text("X = 1\n")

        result = _run(tmp_path, _BASIC_CONFIG_APP.format(level="DEBUG"))

        assert (0, "") == (result.returncode, result.stdout)
        loaded = [
            line.split(" ")[3]
            for line in (tmp_path / "app.log").read_text().splitlines()
            if " module.loaded " in line
        ]
        assert ["lg_mod"] == loaded

    def test_trace_level_lists_library_imports(self, tmp_path: Path) -> None:
        """
        At level 5 (TRACE) the standard library's loads are logged too, under that level name.
        """
        (tmp_path / "lg_mod.py").write_text("X = 1\n")

        result = _run(tmp_path, _BASIC_CONFIG_APP.format(level="DEBUG").replace("logging.DEBUG", "5"))

        assert 0 == result.returncode, result.stderr
        trace = [
            line.split(" ")[3]
            for line in (tmp_path / "app.log").read_text().splitlines()
            if line.startswith("TRACE versionload module.loaded ")
        ]
        assert {"colorsys", "wave"} <= set(trace)


class TestCaplog:
    """
    pytest's caplog sees the events as records of the ``versionload`` logger.
    """

    def test_records_carry_the_event(
        self, caplog: pytest.LogCaptureFixture, tree: ModuleTree, tracker: versionload.Tracker, bytecode: bool
    ) -> None:
        """
        A reload is an INFO record whose ``versionload`` attribute is the event and whose message names it.
        """
        path = tree.module("lg_caplog", "A = 1\n")
        import lg_caplog  # noqa: F401

        path.write_text("A = 2\nB = 3\n")
        caplog.set_level(logging.INFO, logger="versionload")
        tracker.reload("lg_caplog")
        (record,) = [
            r
            for r in caplog.records
            if r.name == "versionload" and r.event == "module.reloaded"  # type: ignore[attr-defined]
        ]

        assert (logging.INFO, "module.reloaded", "lg_caplog") == (
            record.levelno,
            record.event,  # type: ignore[attr-defined]
            record.versionload["module"],  # type: ignore[attr-defined]
        )
        assert (["B"], ["A"], 2) == (record.added, record.changed, record.version)  # type: ignore[attr-defined]
        assert record.getMessage().startswith("module.reloaded lg_caplog reason='requested' version=2 ")

    def test_failure_record_has_the_traceback(
        self, caplog: pytest.LogCaptureFixture, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A failed reload's ERROR record carries exc_info, and the location stays a field.
        """
        path = tree.module("lg_fail", "A = 1\n")
        import lg_fail  # noqa: F401

        path.write_text("A = 2\nraise KeyError('k')\n")
        caplog.set_level(logging.INFO, logger="versionload")
        with pytest.raises(versionload.ReloadError):
            tracker.reload("lg_fail")
        (record,) = [
            r
            for r in caplog.records
            if r.name == "versionload" and r.event == "module.reload_failed"  # type: ignore[attr-defined]
        ]

        assert record.exc_info is not None
        assert (KeyError, f"{path}:2") == (record.exc_info[0], record.location)  # type: ignore[attr-defined]
        assert "raise KeyError('k')" in caplog.text

    def test_level_change_is_seen(
        self, caplog: pytest.LogCaptureFixture, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        Lowering the logger's level after a reload nobody logged lets the next reload through.
        """
        path = tree.module("lg_level", "A = 1\n")
        import lg_level  # noqa: F401

        caplog.set_level(logging.WARNING, logger="versionload")
        path.write_text("A = 2\n")
        tracker.reload("lg_level")
        caplog.set_level(logging.INFO, logger="versionload")
        path.write_text("A = 3\n")
        tracker.reload("lg_level")

        reloads = [r for r in caplog.records if r.name == "versionload" and r.event == "module.reloaded"]  # type: ignore[attr-defined]

        assert [3] == [r.version for r in reloads]  # type: ignore[attr-defined]


class TestDictConfig:
    """
    A dictConfig like the one in docs/events.md.
    """

    def test_handler_receives_the_events(
        self, versionload_logger: logging.Logger, tree: ModuleTree, tracker: versionload.Tracker
    ) -> None:
        """
        A handler configured for the ``versionload`` logger formats each event's message.
        """
        stream = io.StringIO()
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
                "handlers": {
                    "mine": {"class": "logging.StreamHandler", "formatter": "plain", "stream": stream}
                },
                "loggers": {"versionload": {"handlers": ["mine"], "level": "INFO", "propagate": False}},
            }
        )
        path = tree.module("lg_dict", "A = 1\n")
        import lg_dict  # noqa: F401

        path.write_text("A = 2\n")
        tracker.reload("lg_dict")
        tracker.rollback("lg_dict")
        lines = stream.getvalue().splitlines()

        assert [
            "INFO module.reloaded lg_dict",
            "INFO changeset.applied lg_dict",
            "WARNING module.rolled_back lg_dict",
            "INFO changeset.applied lg_dict",
        ] == [" ".join(line.split(" ")[:3]) for line in lines]
        assert "version_reason='import'" in lines[2]


class TestStructlogApplication:
    """
    An application that configured structlog gets the events through it.
    """

    def test_json_lines(
        self,
        versionload_logger: logging.Logger,
        caplog: pytest.LogCaptureFixture,
        tree: ModuleTree,
        tracker: versionload.Tracker,
    ) -> None:
        """
        With structlog's JSONRenderer each event is a JSON line, with the traceback; stdlib sees nothing.
        """
        output = io.StringIO()
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.PrintLoggerFactory(output),
        )
        caplog.set_level(logging.DEBUG, logger="versionload")
        path = tree.module("lg_json", "A = 1\n")
        import lg_json  # noqa: F401

        path.write_text("A = 2\n")
        tracker.reload("lg_json")
        path.write_text("raise OSError('disk')\n")
        with pytest.raises(versionload.ReloadError):
            tracker.reload("lg_json")
        entries = [json.loads(line) for line in output.getvalue().splitlines()]

        assert [
            ("module.reloaded", "info"),
            ("changeset.applied", "info"),
            ("module.reload_failed", "error"),
        ] == [(e["event"], e["level"]) for e in entries]
        assert "OSError: disk" in entries[2]["exception"]
        assert [] == [r for r in caplog.records if r.name == "versionload"]

    def test_reconfiguring_is_seen(self, tree: ModuleTree, tracker: versionload.Tracker) -> None:
        """
        A later structlog.configure with a lower level lets debug events through (the cache is renewed).
        """
        first = io.StringIO()
        structlog.configure(
            processors=[structlog.processors.JSONRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.PrintLoggerFactory(first),
        )
        tree.module("lg_first", "A = 1\n")
        import lg_first  # noqa: F401

        second = io.StringIO()
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
            logger_factory=structlog.PrintLoggerFactory(second),
        )
        tree.module("lg_second", "A = 1\n")
        import lg_second  # noqa: F401

        assert ("", ["module.loaded"]) == (
            first.getvalue(),
            [json.loads(line)["event"] for line in second.getvalue().splitlines()],
        )
