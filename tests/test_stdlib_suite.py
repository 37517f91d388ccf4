"""
CPython's own import-system tests pass with the hook installed wherever they pass without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RUNNER = Path(__file__).with_name("stdlib_suite_runner.py")
SUITES = (
    "test.test_importlib",
    "test.test_import",
    "test.test_runpy",
    "test.test_pkgutil",
    "test.test_zipimport",
    "test.test_linecache",
)


def _start(workdir: Path, report: Path, *options: str) -> subprocess.Popen[bytes]:
    workdir.mkdir()
    # Each run gets its own working directory: the tests write scratch files there.
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(report), *options, *SUITES],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(process: subprocess.Popen[bytes], report: Path) -> dict[str, Any]:
    _, stderr = process.communicate(timeout=240)
    assert 0 == process.returncode, stderr.decode(errors="replace")[-3000:]
    result: dict[str, Any] = json.loads(report.read_text())
    return result


@pytest.mark.timeout(300)
class TestStdlibImportSuite:
    """
    test_importlib, test_import, test_runpy, test_pkgutil, test_zipimport and test_linecache.
    """

    def test_no_new_failures_with_the_hook(self, tmp_path: Path) -> None:
        """
        The tests failing with versionload installed are a subset of those failing without it.
        """
        pytest.importorskip("test.test_importlib", reason="this Python ships without its test suite")
        plain_report, hooked_report = tmp_path / "plain.json", tmp_path / "hooked.json"
        plain_run = _start(tmp_path / "plain", plain_report)
        hooked_run = _start(tmp_path / "hooked", hooked_report, "--hook")
        plain = _finish(plain_run, plain_report)
        hooked = _finish(hooked_run, hooked_report)
        assert set() == set(hooked["failed"]) - set(plain["failed"])
        assert plain["run"] == hooked["run"]
        assert plain["run"] > 1000
        # The hook really was in the way of the suite's imports.
        assert hooked["tracked"] > 50
