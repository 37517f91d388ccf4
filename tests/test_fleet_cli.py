"""
The fleet's command line: ``versionload run --fleet URL --group G`` and ``versionload fleet ...``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

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

    def test_missing_action_names_the_actions(self):
        """
        `versionload fleet` alone exits 2 and names the actions it expects.
        """
        result = versionload_cli("fleet")

        assert (2, True) == (result.returncode, "required: {status,reload,rollback,undo}" in result.stderr)

    def test_malformed_url_is_usage(self):
        """
        A Redis URL whose port cannot be read exits 2 (a usage error), not 4.
        """
        result = versionload_cli("fleet", "status", "--redis", "redis://127.0.0.1:99999/0", "--group", "g")

        assert (2, True) == (result.returncode, "not a Redis URL" in result.stderr)

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


class TestInProcess:
    """
    The same commands through `versionload._live.cli.main`, in this process, against an
    in-process member: every path of the fleet's command code.
    """

    @pytest.fixture(name="member")
    def _member(self, redis_server: RedisServer, tracker, tree) -> Iterator[fleet.Member]:
        # The member's events would go to stdout, in between the command's output.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
        tree.module("cli_inproc", "VALUE = 1\n")
        __import__("cli_inproc")
        member = fleet.join(
            redis_server.url, group=f"i-{uuid.uuid4().hex[:10]}", tracker=tracker, heartbeat=0.1
        )
        yield member
        member.leave()

    def run(self, capsys, *arguments: str) -> tuple[int, str, str]:
        from versionload._live.cli import main

        code = main(list(arguments))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    def test_status_reload_rollback_undo(self, member, redis_server, tree, capsys):
        """
        status shows the member's module; reload, rollback and undo succeed with exit 0.
        """
        common = ("--redis", redis_server.url, "--group", member.group)
        wait_until(lambda: fleet.Fleet(redis_server.url, group=member.group).members(), what="heartbeat")
        tree.module("cli_inproc", "VALUE = 2\n")
        new_sha = hashlib.sha256(b"VALUE = 2\n").hexdigest()

        status = self.run(capsys, "fleet", "status", *common)
        as_json = self.run(capsys, "fleet", "status", "--json", *common)
        reload = self.run(
            capsys, "fleet", "reload", *common, "cli_inproc", "--expect-sha256", f"cli_inproc={new_sha}"
        )
        rollback = self.run(capsys, "fleet", "rollback", *common, "cli_inproc", "--json")
        undo = self.run(capsys, "fleet", "undo", *common)

        assert (0, 0, 0, 0, 0) == (status[0], as_json[0], reload[0], rollback[0], undo[0])
        assert "cli_inproc" in status[1]
        assert [member.id] == [entry["member"] for entry in json.loads(as_json[1])["members"]]
        assert json.loads(rollback[1])["ok"]

    def test_refused_command_lists_the_member(self, member, redis_server, tree, capsys):
        """
        A refused reload exits 5 and prints the member and its reason.
        """
        tree.module("cli_inproc", "VALUE = (\n")
        wait_until(lambda: fleet.Fleet(redis_server.url, group=member.group).members(), what="heartbeat")

        code, _, err = self.run(
            capsys, "fleet", "reload", "--redis", redis_server.url, "--group", member.group, "cli_inproc"
        )

        assert 5 == code
        assert f"failed     {member.id}: cli_inproc: does not compile" in err

    def test_errors(self, redis_server, capsys):
        """
        No members, a bad hash and an empty group each get their exit code.
        """
        common = ("--redis", redis_server.url, "--group", f"empty-{uuid.uuid4().hex[:8]}")

        empty = self.run(capsys, "fleet", "undo", *common)
        bad = self.run(capsys, "fleet", "reload", *common, "x", "--expect-sha256", "nothex")
        malformed = self.run(capsys, "fleet", "reload", *common, "x", "--expect-sha256", "x=1,y")
        nobody = self.run(capsys, "fleet", "status", *common)

        assert (5, 2, 2, 0) == (empty[0], bad[0], malformed[0], nobody[0])
        assert "no live members" in nobody[1]
