"""
versionload.fleet with real member processes: all or none across processes, failures of
processes and of Redis, members that join late, and pre-fork workers.

Each member is a separate Python process that imports one module from its own copy of
a directory and joins the group; it writes its module's VALUE and version to a state
file after every event, which is what the tests read.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import versionload.fleet as fleet

from .fleet_support import MemberProcesses, RedisServer, require_redis, wait_until

V1 = "VALUE = 1\n"
V2 = "VALUE = 2\n"


@pytest.fixture(name="members")
def _members(redis_server: RedisServer, tmp_path: Path) -> Iterator[MemberProcesses]:
    processes = MemberProcesses(redis_server, tmp_path, f"s-{uuid.uuid4().hex[:10]}", "fleet_mod")
    yield processes
    processes.stop()


@pytest.fixture(name="operator")
def _operator(members: MemberProcesses) -> Iterator[fleet.Fleet]:
    with fleet.Fleet(members.server.url, group=members.group) as operator:
        yield operator


def start(members: MemberProcesses, operator: fleet.Fleet, count: int, **kwargs: Any) -> None:
    for index in range(count):
        members.start(index, V1, **kwargs)
    wait_until(lambda: len(operator.members()) == count, what=f"{count} members", timeout=30)
    wait_until(lambda: len(members.states()) == count, what="their state files", timeout=30)


def slow_source(marker: Path, release: Path) -> str:
    """
    New source, the same bytes for every member, that stalls only on a member whose
    directory has a file named SLOW: it creates ``marker`` and waits (at most 10 s) for
    ``release``.
    """
    return (
        "import os, time\n"
        "if os.path.exists(os.path.join(os.path.dirname(__file__), 'SLOW')):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "    deadline = time.monotonic() + 10\n"
        f"    while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:\n"
        "        time.sleep(0.02)\n"
        "VALUE = 2\n"
    )


def values(members: MemberProcesses) -> list[Any]:
    return sorted(state["value"] for state in members.states().values())


class TestAllOrNone:
    def test_eight_members_reload_together(self, members, operator):
        """
        Eight processes (writing bytecode caches, as deployments do) reload the same new
        bytes in one command.
        """
        start(members, operator, 8, bytecode=True)
        for index in range(8):
            members.write_source(index, V2)

        result = operator.reload("fleet_mod", timeout=10)

        assert (True, 8, {}, ()) == (result.ok, len(result.applied), dict(result.failed), result.stragglers)
        assert [2] * 8 == wait_until(
            lambda: values(members) == [2] * 8 and values(members), what="new values"
        )

    def test_one_member_with_other_bytes_changes_nothing(self, members, operator):
        """
        When one member's disk has different bytes, no member reloads.
        """
        start(members, operator, 4)
        for index in range(4):
            members.write_source(index, V2 if index else "VALUE = 3\n")

        result = operator.reload("fleet_mod", timeout=10)

        odd = [info.member for info in operator.members() if info.pid == members.processes[0].pid]
        assert (False, (), odd) == (result.ok, result.applied, list(result.failed))
        assert [1] * 4 == values(members)
        assert all("module.reloaded" not in state["events"] for state in members.states().values()), (
            members.states()
        )

    def test_one_member_whose_code_raises_makes_all_undo(self, members, operator):
        """
        When the new code raises on one member, those that applied it undo it.
        """
        start(members, operator, 4)
        # The same bytes everywhere (so every member is ready); they raise on member 0 only.
        raising = (
            "import os\n"
            "if os.path.exists(os.path.join(os.path.dirname(__file__), 'FAIL')):\n"
            "    raise RuntimeError('only here')\n"
            "VALUE = 2\n"
        )
        (members.moddir(0) / "FAIL").write_text("")
        for index in range(4):
            members.write_source(index, raising)

        result = operator.reload("fleet_mod", timeout=10)

        assert (False, 3, 1) == (result.ok, len(result.applied), len(result.failed))
        assert sorted(result.applied) == sorted(result.rolled_back)
        assert [1] * 4 == wait_until(lambda: values(members) == [1] * 4 and values(members), what="undo")

    def test_member_killed_mid_command_is_a_straggler(self, members, operator, tmp_path):
        """
        A member killed while applying is reported as a straggler, and the others undo.
        """
        start(members, operator, 4)
        marker = tmp_path / "applying"
        (members.moddir(0) / "SLOW").write_text("")
        for index in range(4):
            members.write_source(index, slow_source(marker, tmp_path / "never"))
        victim = [info.member for info in operator.members() if info.pid == members.processes[0].pid]
        outcome: list[fleet.FleetResult] = []
        thread = threading.Thread(target=lambda: outcome.append(operator.reload("fleet_mod", timeout=3)))
        thread.start()
        wait_until(marker.exists, what="the slow member to start applying")
        members.kill(members.processes[0])
        thread.join(timeout=30)

        (result,) = outcome
        assert (False, tuple(victim), 3) == (result.ok, result.stragglers, len(result.rolled_back))
        survivors = {p.pid for p in members.processes[1:]}
        assert [1] * 3 == sorted(s["value"] for pid, s in members.states().items() if pid in survivors)


class TestLateMembers:
    def test_member_started_after_the_change_converges(self, members, operator, tmp_path):
        """
        A member that joins after a command reloads to the group's target when its disk has
        those bytes, and one whose disk has other bytes reports divergence.
        """
        start(members, operator, 2)
        for index in range(2):
            members.write_source(index, V2)
        assert operator.reload("fleet_mod", timeout=10).ok
        go = tmp_path / "go"
        late = members.start(2, V1, go=go)
        odd = members.start(3, V1, go=go)
        wait_until(lambda: len(members.states()) == 4, what="the late members to import", timeout=30)
        members.write_source(2, V2)
        members.write_source(3, "VALUE = 3\n")
        go.write_text("go")

        wait_until(lambda: values(members) == [1, 2, 2, 2], what="the late member to converge", timeout=30)
        infos = wait_until(
            lambda: [i for i in operator.members() if i.pid == odd.pid and i.diverged], what="divergence"
        )

        assert ["fleet_mod"] == list(infos[0].diverged)
        assert "fleet.converged" in members.states()[late.pid]["events"]


class TestRedisFailure:
    def test_redis_restarted_during_a_command(self, tmp_path):
        """
        Redis restarting mid-command is a FleetConnectionError, and every member ends on the
        version it had before.
        """
        server = RedisServer(require_redis(), tmp_path).start()
        processes = MemberProcesses(server, tmp_path, "restart", "fleet_mod")
        try:
            with fleet.Fleet(server.url, group="restart") as operator:
                start(processes, operator, 3)
                marker, release = tmp_path / "applying", tmp_path / "release"
                (processes.moddir(0) / "SLOW").write_text("")
                for index in range(3):
                    processes.write_source(index, slow_source(marker, release))
                errors: list[BaseException] = []

                def command() -> None:
                    try:
                        operator.reload("fleet_mod", timeout=3)
                    except BaseException as error:  # noqa: BLE001 - the test inspects it
                        errors.append(error)

                thread = threading.Thread(target=command)
                thread.start()
                wait_until(marker.exists, what="the slow member to start applying")
                server.restart()
                release.write_text("go")
                thread.join(timeout=30)

                assert [fleet.FleetConnectionError] == [type(error) for error in errors]
                assert [1, 1, 1] == wait_until(
                    lambda: values(processes) == [1, 1, 1] and values(processes),
                    what="every member back on version 1",
                    timeout=20,
                )
        finally:
            processes.stop()
            server.stop()


class TestPreFork:
    def test_forked_workers_follow(self, members, operator):
        """
        Workers forked by a member (multiprocessing, fork) join as themselves and reload too.
        """
        members.start(0, V1, workers=3, heartbeat=5.0)
        infos = wait_until(lambda: len(operator.members()) == 4 and operator.members(), what="4 members")
        wait_until(lambda: len(members.states()) == 4, what="the workers' state files")
        members.write_source(0, V2)

        result = operator.reload("fleet_mod", timeout=10)

        assert (True, sorted(info.member for info in infos)) == (result.ok, sorted(result.applied))
        assert len({info.pid for info in infos}) == 4
        assert [2] * 4 == wait_until(lambda: values(members) == [2] * 4 and values(members), what="workers")

    def test_a_worker_that_exits_leaves_the_group(self, members, operator):
        """
        A forked worker that ends (with os._exit, as multiprocessing children do) removes
        its heartbeat rather than lingering until it expires (15 s here).
        """
        parent = members.start(0, V1, workers=2, heartbeat=5.0)
        wait_until(lambda: len(operator.members()) == 3, what="3 members")

        members.stop_file.write_text("stop")  # the workers end; the parent stays

        remaining = wait_until(
            lambda: len(operator.members()) == 1 and operator.members(), what="1 member", timeout=8
        )
        assert [parent.pid] == [info.pid for info in remaining]
