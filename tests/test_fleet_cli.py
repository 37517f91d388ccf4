"""
The fleet's command line: ``versionload run --fleet URL --group G`` and ``versionload fleet ...``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import versionload.fleet as fleet

from .fleet_support import RedisServer, free_port, wait_until


def versionload_cli(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "versionload", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


class RunningMember:
    def __init__(self, root: Path, url: str, group: str) -> None:
        self.root = root
        self.group = group
        self.stop = root / "stop"
        self.module = root / "cli_fleet_mod.py"
        self.module.write_text("VALUE = 1\n")
        (root / "main.py").write_text(
            textwrap.dedent(
                f"""
                import os, time
                import cli_fleet_mod
                deadline = time.monotonic() + 60
                while not os.path.exists({str(self.stop)!r}) and time.monotonic() < deadline:
                    time.sleep(0.02)
                """
            )
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "versionload",
                "run",
                "--fleet",
                url,
                "--group",
                group,
                str(root / "main.py"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=root,
        )

    def finish(self) -> int:
        self.stop.write_text("stop")
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=5)


@pytest.fixture(name="running")
def _running(redis_server: RedisServer, tmp_path: Path) -> Iterator[RunningMember]:
    member = RunningMember(tmp_path, redis_server.url, f"c-{uuid.uuid4().hex[:10]}")
    yield member
    member.finish()


class TestRunFleet:
    def test_run_joins_and_fleet_commands_drive_it(self, running: RunningMember, redis_server: RedisServer):
        """
        A program under `versionload run --fleet` is a member; `fleet status`, `reload` and
        `undo` act on it, and it leaves the group when it ends.
        """
        group = running.group
        with fleet.Fleet(redis_server.url, group=group) as operator:
            wait_until(lambda: [m for m in operator.members() if m.modules], what="the member", timeout=30)
            running.module.write_text("VALUE = 22\n")
            env = {"VERSIONLOAD_FLEET_REDIS": redis_server.url}

            status = versionload_cli("fleet", "status", "--group", group, env=env)
            reloaded = versionload_cli(
                "fleet", "reload", "--group", group, "cli_fleet_mod", "--timeout", "10", env=env
            )
            after = versionload_cli("fleet", "status", "--group", group, env=env)
            undone = versionload_cli("fleet", "undo", "--group", group, "--timeout", "10", env=env)
            code = running.finish()
            remaining = operator.members()

        new_sha = hashlib.sha256(b"VALUE = 22\n").hexdigest()
        assert (0, 0, 0, 0, ()) == (
            status.returncode,
            reloaded.returncode,
            after.returncode,
            undone.returncode,
            remaining,
        )
        assert "cli_fleet_mod" in status.stdout
        assert "HEARTBEAT" in status.stdout
        assert f"target  cli_fleet_mod  {new_sha[:12]}" in after.stdout
        assert "applied on 1 members" in reloaded.stdout
        assert "members answered" in reloaded.stderr
        assert 0 == code

    def test_failed_reload_exits_5(self, running: RunningMember, redis_server: RedisServer):
        """
        A reload the member refuses exits 5 and names the member and the reason.
        """
        group = running.group
        with fleet.Fleet(redis_server.url, group=group) as operator:
            wait_until(lambda: [m for m in operator.members() if m.modules], what="the member", timeout=30)
        running.module.write_text("VALUE = (\n")

        result = versionload_cli(
            "fleet", "reload", "--redis", redis_server.url, "--group", group, "cli_fleet_mod"
        )

        assert 5 == result.returncode
        assert "does not compile" in result.stderr


class TestFleetCommandErrors:
    def test_missing_url_is_usage(self):
        """
        Without --redis nor the environment variable, the command exits 2.
        """
        result = versionload_cli("fleet", "status", "--group", "g", env={"VERSIONLOAD_FLEET_REDIS": ""})

        assert 2 == result.returncode

    def test_unreachable_exits_4_without_the_password(self):
        """
        An unreachable Redis exits 4, and the message hides the password.
        """
        url = f"redis://ops:topsecret@127.0.0.1:{free_port()}/0"

        result = versionload_cli("fleet", "undo", "--redis", url, "--group", "g")

        assert (4, False) == (result.returncode, "topsecret" in result.stderr)

    def test_run_fleet_without_group_is_usage(self, tmp_path: Path, redis_server: RedisServer):
        """
        `run --fleet` without `--group` exits 2 before running the program.
        """
        (tmp_path / "main.py").write_text("raise SystemExit(9)\n")

        result = versionload_cli("run", "--fleet", redis_server.url, str(tmp_path / "main.py"))

        assert 2 == result.returncode
