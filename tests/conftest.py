"""
Every test leaves the process as it found it: the import system's state, the
default tracker, and structlog's configuration.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

import versionload
from versionload._events import filter_load_logs

from .fleet_support import RedisServer, require_redis
from .helpers import ModuleTree

# `python3 dev.py test --cov` asks for the programs the tests start (the versionload
# command) to be measured too. Set here, not by dev.py, so that the test process
# itself is measured by pytest-cov alone and not also from its own start-up.
if os.environ.get("VERSIONLOAD_COVERAGE_CONFIG"):
    os.environ["COVERAGE_PROCESS_START"] = os.environ["VERSIONLOAD_COVERAGE_CONFIG"]


@pytest.fixture(autouse=True)
def _import_state() -> Iterator[None]:
    modules = dict(sys.modules)
    path = list(sys.path)
    meta_path = list(sys.meta_path)
    path_hooks = list(sys.path_hooks)
    importer_cache = dict(sys.path_importer_cache)
    dont_write_bytecode = sys.dont_write_bytecode
    try:
        yield
    finally:
        versionload.uninstall()
        versionload.default_tracker().clear()
        versionload.default_tracker().configure(
            include=None, exclude=None, max_versions=None, allowed_roots=None
        )
        sys.modules.clear()
        sys.modules.update(modules)
        sys.path[:] = path
        sys.meta_path[:] = meta_path
        sys.path_hooks[:] = path_hooks
        sys.path_importer_cache.clear()
        sys.path_importer_cache.update(importer_cache)
        sys.dont_write_bytecode = dont_write_bytecode
        structlog.reset_defaults()
        filter_load_logs(None)


@pytest.fixture(name="tree")
def _tree(tmp_path: Path) -> ModuleTree:
    """
    A fresh directory first on ``sys.path`` for modules the test writes.
    """
    root = tmp_path / "src"
    root.mkdir()
    sys.path.insert(0, str(root))  # the autouse fixture restores sys.path
    return ModuleTree(root)


@pytest.fixture(name="bytecode", params=["no-pyc", "pyc"])
def _bytecode(request: pytest.FixtureRequest) -> bool:
    """
    Run the test twice: without bytecode caches (as the machines here are set up)
    and with them written, as real users have them.
    """
    writes = request.param == "pyc"
    sys.dont_write_bytecode = not writes
    return writes


@pytest.fixture(name="tracker")
def _tracker() -> Iterator[versionload.Tracker]:
    """
    A fresh tracker with its hook installed, removed afterwards.
    """
    tracker = versionload.Tracker().install()
    yield tracker
    tracker.uninstall()


@pytest.fixture(name="hook")
def _hook() -> versionload.Tracker:
    """
    The default tracker installed, for tests of the module-level API.
    """
    return versionload.install()


@pytest.fixture(name="redis_server", scope="session")
def _redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """
    A redis-server on a free loopback port for the whole session (see tests/fleet_support.py).
    """
    binary = require_redis()
    server = RedisServer(binary, tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
