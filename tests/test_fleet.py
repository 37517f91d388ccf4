"""
versionload.fleet in one process: a member with its own tracker, an operator, a real Redis.

Several members at once, forks and failures of whole processes are in test_fleet_scenarios.py.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import structlog.testing

import versionload
import versionload.fleet as fleet
from versionload.testing import capture_events

from .fleet_support import RedisServer, free_port, require_redis, wait_until
from .helpers import ModuleTree


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(name="group")
def _group() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(name="joined")
def _joined(redis_server: RedisServer, tracker: versionload.Tracker, group: str) -> Iterator[fleet.Member]:
    """
    This process as a member of a fresh group, with the test's tracker; left afterwards.
    """
    member = fleet.join(redis_server.url, group=group, tracker=tracker, heartbeat=0.1)
    yield member
    member.leave()


@pytest.fixture(name="operator")
def _operator(redis_server: RedisServer, group: str) -> Iterator[fleet.Fleet]:
    with fleet.Fleet(redis_server.url, group=group) as operator:
        yield operator


V1 = "VALUE = 1\n"
V2 = "VALUE = 2\n"


class TestJoin:
    def test_join_is_idempotent(self, joined: fleet.Member, redis_server: RedisServer, tracker, group):
        """
        Joining the same group again returns the same member.
        """
        again = fleet.join(redis_server.url, group=group, tracker=tracker)

        assert joined is again

    def test_join_with_another_tracker_is_refused(self, joined: fleet.Member, redis_server, group):
        """
        A process is one member of a group: a second tracker for the same group is an error.
        """
        with pytest.raises(versionload.InvalidArgumentError):
            fleet.join(redis_server.url, group=group, tracker=versionload.Tracker())

    def test_members_lists_tracked_modules(self, tree: ModuleTree, tracker, joined, operator):
        """
        A member's heartbeat carries each tracked module's version and source hash.
        """
        tree.module("fl_listed", V1)
        __import__("fl_listed")

        info = wait_until(
            lambda: [m for m in operator.members() if m.modules], what="a heartbeat with the module"
        )[0]

        assert (joined.id, [fleet.ModuleState("fl_listed", 1, sha(V1))]) == (info.member, list(info.modules))

    def test_leave_removes_the_heartbeat(self, joined: fleet.Member, operator: fleet.Fleet):
        """
        After leave, the member no longer appears, and leaving twice is harmless.
        """
        wait_until(operator.members, what="the member")
        joined.leave()
        joined.leave()

        assert (False, ()) == (joined.running, operator.members())

    def test_bad_arguments(self, redis_server: RedisServer):
        """
        A bad URL, group or heartbeat is an InvalidArgumentError, before any connection.
        """
        for kwargs in (
            {"url": "http://x", "group": "g"},
            {"url": redis_server.url, "group": "no spaces"},
            {"url": redis_server.url, "group": "g", "heartbeat": 0},
        ):
            url = kwargs.pop("url")
            with pytest.raises(versionload.InvalidArgumentError):
                fleet.join(url, **kwargs)  # type: ignore[arg-type]

    def test_unreachable_redis_is_a_connection_error_without_the_password(self):
        """
        A server that does not answer raises FleetConnectionError; the password is not shown.
        """
        port = free_port()
        url = f"redis://user:hunter2@127.0.0.1:{port}/0"

        with pytest.raises(fleet.FleetConnectionError) as caught:
            fleet.join(url, group="g")

        assert "hunter2" not in str(caught.value)
        assert "user:***@127.0.0.1" in str(caught.value)


class TestReload:
    def test_reload_applies_on_the_member(self, tree: ModuleTree, tracker, joined, operator, bytecode):
        """
        A fleet reload runs the member's new source and reports it applied.
        """
        tree.module("fl_reload", V1)
        module = __import__("fl_reload")
        tree.module("fl_reload", V2)

        result = operator.reload("fl_reload", timeout=5)

        assert (True, (joined.id,), 2) == (result.ok, result.applied, module.VALUE)
        assert {"fl_reload": sha(V2)} == operator.target()
        (changeset,) = tracker.changesets()
        assert (("fl_reload",), True) == (changeset.modules, changeset.trigger.startswith("fleet:"))

    def test_events_of_a_reload(self, tree: ModuleTree, tracker, joined, operator):
        """
        The member emits prepared and applied with exact fields.
        """
        tree.module("fl_events", V1)
        __import__("fl_events")
        tree.module("fl_events", V2)

        with capture_events(tracker) as events:
            result = operator.reload("fl_events", timeout=5)
            wait_until(lambda: any(e.event == "fleet.command_received" and e.phase == "done" for e in events))

        fleet_events = [
            e.fields() | {"event": e.event} for e in events if e.event in {"fleet.prepared", "fleet.applied"}
        ]
        base = {
            "module": "fl_events",
            "reason": "fleet",
            "group": joined.group,
            "member": joined.id,
            "command": result.command,
        }
        assert [
            base
            | {
                "event": "fleet.prepared",
                "op": "reload",
                "modules": ["fl_events"],
                "ready": True,
                "source_sha256": [sha(V2)],
                "error": None,
            },
            base | {"event": "fleet.applied", "op": "reload", "modules": ["fl_events"], "versions": [2]},
        ] == fleet_events

    def test_operator_logs_the_outcome(self, tree: ModuleTree, tracker, joined, operator):
        """
        The operator logs fleet.command_finished with the result's fields.
        """
        tree.module("fl_logged", V1)
        __import__("fl_logged")
        tree.module("fl_logged", V2)

        with structlog.testing.capture_logs() as logs:
            result = operator.reload("fl_logged", timeout=5)

        (finished,) = [log for log in logs if log["event"] == "fleet.command_finished"]
        finished.pop("duration_ms")
        assert {
            "event": "fleet.command_finished",
            "log_level": "info",
            "module": "fl_logged",
            "reason": "requested",
            "group": joined.group,
            "command": result.command,
            "op": "reload",
            "modules": ["fl_logged"],
            "ok": True,
            "applied": [joined.id],
            "failed": [],
            "stragglers": [],
            "rolled_back": [],
        } == finished

    def test_cascade_reloads_dependents_and_undo_restores_them(
        self, tree: ModuleTree, tracker, joined, operator
    ):
        """
        With cascade, modules that import the reloaded one are reloaded too, and undo puts
        both back.
        """
        tree.module("fl_base", V1)
        tree.module("fl_user", "import fl_base\nSEEN = fl_base.VALUE\n")
        user = __import__("fl_user")
        tree.module("fl_base", V2)

        result = operator.reload("fl_base", cascade=True, timeout=5)
        seen = user.SEEN
        undone = operator.undo(timeout=5)

        assert (True, 2, True) == (result.ok, seen, undone.ok)
        assert (1, 1, 1) == (user.SEEN, tracker.current("fl_base").number, tracker.current("fl_user").number)

    def test_expected_hash_mismatch_changes_nothing(self, tree: ModuleTree, tracker, joined, operator):
        """
        With expect_sha256 that the member's disk does not have, nothing is reloaded.
        """
        tree.module("fl_expect", V1)
        module = __import__("fl_expect")
        tree.module("fl_expect", V2)

        result = operator.reload("fl_expect", expect_sha256=sha("VALUE = 3\n"), timeout=5)

        assert (False, (), 1, 1) == (result.ok, result.applied, module.VALUE, tracker.current(module).number)
        assert "expected" in result.failed[joined.id]
        assert {} == operator.target()

    def test_code_that_raises_changes_nothing(self, tree: ModuleTree, tracker, joined, operator):
        """
        New code that raises fails the command, and the member keeps its version.
        """
        tree.module("fl_raises", V1)
        module = __import__("fl_raises")
        tree.module("fl_raises", "VALUE = 2\nraise RuntimeError('no')\n")

        result = operator.reload("fl_raises", timeout=5)

        assert (False, 1) == (result.ok, module.VALUE)
        assert "RuntimeError" in result.failed[joined.id]

    def test_syntax_error_is_refused_at_prepare(self, tree: ModuleTree, tracker, joined, operator):
        """
        Source that does not compile is refused in the first phase.
        """
        tree.module("fl_syntax", V1)
        __import__("fl_syntax")
        tree.module("fl_syntax", "VALUE = (\n")

        result = operator.reload("fl_syntax", timeout=5)

        assert "does not compile" in result.failed[joined.id]

    def test_untracked_module_is_refused(self, joined, operator):
        """
        A module the member does not track makes it answer not ready.
        """
        result = operator.reload("fl_nowhere", timeout=5)

        assert not result.ok
        assert "fl_nowhere" in result.failed[joined.id]

    def test_outside_allowed_roots_is_refused(self, tree: ModuleTree, tracker, joined, operator, tmp_path):
        """
        A member only runs source within its tracker's allowed_roots.
        """
        tree.module("fl_roots", V1)
        module = __import__("fl_roots")
        tree.module("fl_roots", V2)
        other = tmp_path / "elsewhere"
        other.mkdir()
        tracker.configure(allowed_roots=[other])

        result = operator.reload("fl_roots", timeout=5)

        assert (False, 1) == (result.ok, module.VALUE)
        assert "allowed_roots" in result.failed[joined.id]

    def test_prune_drops_names_the_new_code_no_longer_binds(self, tree: ModuleTree, joined, operator):
        """
        reload(prune=True) reaches the member: a name the new source dropped is gone there.
        """
        tree.module("fl_prune", V1 + "OLD = 1\n")
        module = __import__("fl_prune")
        tree.module("fl_prune", V2)

        result = operator.reload("fl_prune", prune=True, timeout=5)

        assert (True, 2, False) == (result.ok, module.VALUE, hasattr(module, "OLD"))

    def test_bad_arguments(self, operator: fleet.Fleet):
        """
        Bad module names, hashes and timeouts raise InvalidArgumentError before anything is sent.
        """
        for call in (
            lambda: operator.reload([]),
            lambda: operator.reload("not a name"),
            lambda: operator.reload(["a", "a"]),
            lambda: operator.reload("a", expect_sha256="xyz"),
            lambda: operator.reload(["a", "b"], expect_sha256=sha("")),
            lambda: operator.reload("a", timeout=0),
            lambda: operator.reload("a", cascade="yes"),  # type: ignore[arg-type]
            lambda: operator.rollback("a", to_sha256="nope"),
        ):
            with pytest.raises(versionload.InvalidArgumentError):
                call()

    def test_no_members(self, operator: fleet.Fleet):
        """
        A command to a group without live members raises NoMembersError.
        """
        with pytest.raises(fleet.NoMembersError):
            operator.reload("anything", timeout=1)


class TestRollbackAndUndo:
    def test_undo_puts_back_the_last_command(self, tree: ModuleTree, tracker, joined, operator):
        """
        undo rolls every member back to the version it had before the last command,
        and the group's target back to what it was (here: none).
        """
        tree.module("fl_undo", V1)
        module = __import__("fl_undo")
        tree.module("fl_undo", V2)
        assert operator.reload("fl_undo", timeout=5).ok

        result = operator.undo(timeout=5)

        assert (True, 1, 1) == (result.ok, module.VALUE, tracker.current(module).number)
        assert {} == operator.target()

    def test_rollback_to_the_previous_version(self, tree: ModuleTree, tracker, joined, operator):
        """
        rollback without a hash goes to the version before each member's current one.
        """
        tree.module("fl_prev", V1)
        module = __import__("fl_prev")
        tree.module("fl_prev", V2)
        assert operator.reload("fl_prev", timeout=5).ok

        result = operator.rollback("fl_prev", timeout=5)

        assert (True, 1, 1) == (result.ok, module.VALUE, tracker.current(module).number)

    def test_nothing_to_undo(self, joined, operator: fleet.Fleet):
        """
        undo on a group that never ran a command raises NothingToUndoError.
        """
        with pytest.raises(fleet.NothingToUndoError):
            operator.undo(timeout=1)

    def test_rollback_to_a_hash(self, tree: ModuleTree, tracker, joined, operator):
        """
        rollback(to_sha256=...) goes to the member's version with that source hash.
        """
        tree.module("fl_back", V1)
        module = __import__("fl_back")
        for text in (V2, "VALUE = 3\n"):
            tree.module("fl_back", text)
            tracker.reload(module)

        result = operator.rollback("fl_back", to_sha256=sha(V2), timeout=5)

        assert (True, 2, 2) == (result.ok, module.VALUE, tracker.current(module).number)

    def test_rollback_to_an_unknown_hash_changes_nothing(self, tree: ModuleTree, tracker, joined, operator):
        """
        A hash no version of the member has is refused.
        """
        tree.module("fl_unknown", V1)
        module = __import__("fl_unknown")

        result = operator.rollback("fl_unknown", to_sha256=sha("VALUE = 9\n"), timeout=5)

        assert (False, 1) == (result.ok, module.VALUE)


class TestConvergence:
    def test_member_joining_later_converges(self, tree: ModuleTree, tracker, redis_server, group, operator):
        """
        A member whose module differs from the target reloads it if its disk has the target's bytes.
        """
        tree.module("fl_late", V1)
        module = __import__("fl_late")
        redis_server.client().hset(f"versionload:fleet:{group}:target", "fl_late", sha(V2))
        tree.module("fl_late", V2)

        with capture_events(tracker) as events:
            member = fleet.join(redis_server.url, group=group, tracker=tracker, heartbeat=0.1)
            try:
                wait_until(lambda: module.VALUE == 2, what="convergence")
                wait_until(lambda: any(e.event == "fleet.converged" for e in events))
            finally:
                member.leave()

        converged = [e.fields() for e in events if e.event == "fleet.converged"]
        assert [
            {
                "module": "fl_late",
                "reason": "fleet",
                "group": group,
                "member": member.id,
                "status": "converged",
                "version": 2,
                "target_sha256": sha(V2),
                "disk_sha256": sha(V2),
            }
        ] == converged

    def test_member_with_other_bytes_reports_divergence(self, tree, tracker, redis_server, group, operator):
        """
        A member whose disk lacks the target's bytes keeps its version and reports it diverged.
        """
        tree.module("fl_diverge", V1)
        module = __import__("fl_diverge")
        redis_server.client().hset(f"versionload:fleet:{group}:target", "fl_diverge", sha(V2))

        member = fleet.join(redis_server.url, group=group, tracker=tracker, heartbeat=0.1)
        try:
            info = wait_until(
                lambda: [m for m in operator.members() if m.diverged], what="divergence in the heartbeat"
            )[0]
        finally:
            member.leave()

        assert ({"fl_diverge": sha(V1)}, 1) == (dict(info.diverged), module.VALUE)


class TestReconnect:
    def test_member_comes_back_after_redis_restarts(self, tmp_path: Path, tree: ModuleTree, tracker):
        """
        A member reconnects and resubscribes by itself after Redis restarts, and obeys the next command.
        """
        server = RedisServer(require_redis(), tmp_path).start()
        tree.module("fl_back_again", V1)
        module = __import__("fl_back_again")
        member = fleet.join(server.url, group="reconnect", tracker=tracker, heartbeat=0.1)
        try:
            server.restart()
            tree.module("fl_back_again", V2)
            with fleet.Fleet(server.url, group="reconnect") as operator:
                wait_until(operator.members, what="the member's heartbeat on the new server")
                result = wait_until(
                    lambda: operator.reload("fl_back_again", timeout=2), what="a command the member answers"
                )
        finally:
            member.leave()
            server.stop()

        assert (True, 2) == (result.ok, module.VALUE)


class TestSafety:
    @pytest.mark.parametrize(
        "message",
        [
            b"not json",
            b"[]",
            b'{"v": 2}',
            b'{"v": 1, "id": "../../etc", "phase": "prepare", "op": "reload"}',
            json.dumps({"v": 1, "id": "a" * 32, "phase": "prepare", "op": "exec", "modules": ["x"]}).encode(),
            json.dumps(
                {
                    "v": 1,
                    "id": "a" * 32,
                    "phase": "prepare",
                    "op": "reload",
                    "modules": ["os; rm"],
                    "timeout": 1,
                }
            ).encode(),
            b"{" * 100000,
        ],
    )
    def test_hostile_messages_are_logged_and_ignored(
        self, message, tree, tracker, joined, operator, group, redis_server
    ):
        """
        A malformed message is reported as fleet.message_rejected and the member keeps working.
        """
        tree.module("fl_hostile", V1)
        module = __import__("fl_hostile")
        tree.module("fl_hostile", V2)

        with capture_events(tracker) as events:
            redis_server.client().publish(f"versionload:fleet:{group}:commands", message)
            wait_until(lambda: any(e.event == "fleet.message_rejected" for e in events))
            result = operator.reload("fl_hostile", timeout=5)

        assert (True, 2) == (result.ok, module.VALUE)

    def test_a_commit_the_operator_did_not_decide_is_not_applied(
        self, tree, tracker, joined, group, redis_server
    ):
        """
        A well-formed prepare and commit published by someone else than an operator (no
        decision in Redis) change nothing: the member drops the command.
        """
        tree.module("fl_forged", V1)
        module = __import__("fl_forged")
        tree.module("fl_forged", V2)
        channel = f"versionload:fleet:{group}:commands"
        command_id = uuid.uuid4().hex
        prepare = {"v": 1, "id": command_id, "phase": "prepare", "op": "reload", "modules": ["fl_forged"]}

        with capture_events(tracker) as events:
            redis_server.client().publish(channel, json.dumps(prepare | {"timeout": 5}))
            wait_until(lambda: any(e.event == "fleet.prepared" for e in events), what="prepared")
            redis_server.client().publish(
                channel, json.dumps({"v": 1, "id": command_id, "phase": "commit", "op": "reload"})
            )
            wait_until(lambda: any(e.event == "fleet.aborted" for e in events), what="aborted")

        assert (1, 1) == (module.VALUE, tracker.current(module).number)
        assert "module.reloaded" not in [e.event for e in events]

    def test_password_and_acl_user(self, redis_server: RedisServer, tree, tracker, group):
        """
        A URL with an ACL user and password works, and no repr, event or error shows the password.
        """
        admin = redis_server.client()
        user = f"u{uuid.uuid4().hex[:8]}"
        admin.execute_command("ACL", "SETUSER", user, "on", ">s3cret-pw", "~*", "&*", "+@all")
        url = f"redis://{user}:s3cret-pw@127.0.0.1:{redis_server.port}/0"
        tree.module("fl_acl", V1)
        module = __import__("fl_acl")
        tree.module("fl_acl", V2)
        try:
            with capture_events(tracker) as events:
                member = fleet.join(url, group=group, tracker=tracker, heartbeat=0.1)
                try:
                    with fleet.Fleet(url, group=group) as operator:
                        result = operator.reload("fl_acl", timeout=5)
                        shown = repr(member) + repr(operator)
                finally:
                    member.leave()
            with pytest.raises(fleet.FleetConnectionError) as caught:
                fleet.Fleet(url.replace("s3cret-pw", "wrong-pw"), group=group).members()
        finally:
            admin.execute_command("ACL", "DELUSER", user)

        assert (True, 2) == (result.ok, module.VALUE)
        assert "s3cret" not in shown + json.dumps([e.fields() for e in events]) + str(caught.value)
        assert "wrong-pw" not in str(caught.value)

    def test_tls_with_a_password(self, redis_server: RedisServer, tree, tracker, group, tmp_path: Path):
        """
        A rediss:// URL (TLS, checked against our certificate) with a password works end to end.
        """
        if shutil.which("openssl") is None:
            pytest.skip("needs the openssl command to make a certificate")
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [redis_server.binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
             "--tls-auth-clients", "no", "--requirepass", "tls-pw", "--save", "", "--appendonly", "no",
             "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"rediss://:tls-pw@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        tree.module("fl_tls", V1)
        module = __import__("fl_tls")
        tree.module("fl_tls", V2)
        try:
            operator = wait_until(lambda: _reachable(url, group), what="the TLS server")
            with capture_events(tracker) as events:
                member = fleet.join(url, group=group, tracker=tracker, heartbeat=0.1)
                try:
                    result = operator.reload("fl_tls", timeout=5)
                finally:
                    member.leave()
                    operator.close()
        finally:
            server.terminate()
            server.wait(timeout=10)

        assert (True, 2) == (result.ok, module.VALUE)
        assert "tls-pw" not in json.dumps([e.fields() for e in events]) + repr(member)

    def test_unix_socket(self, redis_server: RedisServer, tree, tracker, group, tmp_path: Path):
        """
        A unix:// URL (a server listening on a unix socket only) works end to end.
        """
        path = tmp_path / "r.sock"
        server = subprocess.Popen(
            [redis_server.binary, "--port", "0", "--unixsocket", str(path), "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"unix://{path}"
        tree.module("fl_unix", V1)
        module = __import__("fl_unix")
        tree.module("fl_unix", V2)
        try:
            operator = wait_until(lambda: _reachable(url, group), what="the unix-socket server")
            member = fleet.join(url, group=group, tracker=tracker, heartbeat=0.1)
            try:
                result = operator.reload("fl_unix", timeout=5)
            finally:
                member.leave()
                operator.close()
        finally:
            server.terminate()
            server.wait(timeout=10)

        assert (True, 2) == (result.ok, module.VALUE)

    @pytest.mark.parametrize(
        "url",
        [
            "redis://127.0.0.1:99999/0",
            "redis://127.0.0.1:port/0",
            "redis://[::1/0",
            "redis://127.0.0.1:6379/zero",
        ],
    )
    def test_malformed_url_is_refused_before_any_connection(self, url: str):
        """
        A URL whose port, host or database cannot be read is an InvalidArgumentError from Fleet().
        """
        with pytest.raises(versionload.InvalidArgumentError) as caught:
            fleet.Fleet(url, group="g")

        assert isinstance(caught.value, ValueError)

    def test_unreadable_url_option_is_an_invalid_argument(self):
        """
        An option in the URL's query that the client cannot read is an InvalidArgumentError.
        """
        operator = fleet.Fleet(f"redis://:hunter2@127.0.0.1:{free_port()}/0?socket_timeout=soon", group="g")

        with pytest.raises(versionload.InvalidArgumentError) as caught:
            operator.members()

        assert ("hunter2" in str(caught.value), "socket_timeout" in str(caught.value)) == (False, True)

    def test_unreachable_redis_is_named_once(self):
        """
        The operator's connection error says which server failed once, not wrapped in itself.
        """
        operator = fleet.Fleet(f"redis://127.0.0.1:{free_port()}/0", group="g")

        with pytest.raises(fleet.FleetConnectionError) as caught:
            operator.members()

        assert 1 == str(caught.value).count("failed:")

    def test_redact_url(self):
        """
        redact_url hides the password and keeps the user, host, port and database.
        """
        assert "rediss://ops:***@cache.example:6380/2" == fleet.redact_url(
            "rediss://ops:pw@cache.example:6380/2"
        )

    def test_redact_url_keeps_a_socket_path(self):
        """
        redact_url of a unix:// URL keeps it a URL (scheme://path), and drops a password query.
        """
        assert "unix:///run/redis.sock" == fleet.redact_url("unix:///run/redis.sock?password=pw")

    def test_errors_pickle_and_belong_to_the_tree(self):
        """
        Fleet errors are VersionLoadErrors, also the stdlib error a caller catches, and pickle.
        """
        error = fleet.NoMembersError("none", group="g")

        copy = pickle.loads(pickle.dumps(error))

        assert (True, True, "g", "none") == (
            isinstance(copy, versionload.VersionLoadError),
            isinstance(copy, LookupError),
            copy.group,
            str(copy),
        )


def _reachable(url: str, group: str) -> fleet.Fleet | None:
    operator = fleet.Fleet(url, group=group)
    try:
        operator.members()
    except fleet.FleetConnectionError:
        operator.close()
        return None
    return operator


class TestImport:
    def test_import_versionload_does_not_import_redis(self):
        """
        Neither the fleet nor the redis client is imported by `import versionload`.
        """
        code = (
            "import sys, versionload; print(sorted(m for m in sys.modules if m == 'redis' or 'fleet' in m))"
        )

        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

        assert "[]" == out.strip()


class TestProtocol:
    """
    The message schema, checked directly: what a member accepts and what it rejects.
    """

    GOOD: ClassVar[dict[str, object]] = {
        "v": 1,
        "id": "ab" * 16,
        "phase": "prepare",
        "op": "reload",
        "modules": ["app.pricing"],
        "expect": {},
        "cascade": False,
        "prune": False,
        "to_sha256": None,
        "of": None,
        "restore": {},
        "timeout": 5,
    }

    def test_a_command_round_trips(self):
        """
        An encoded command parses back to an equal command.
        """
        from versionload._fleet.protocol import Command, parse_command

        command = Command(
            id="cd" * 16, phase="prepare", op="reload", modules=("a", "b.c"), expect={"a": sha("")}
        )

        assert command == parse_command(command.encode().encode())

    @pytest.mark.parametrize(
        "change",
        [
            {"modules": []},
            {"modules": ["a", "a"]},
            {"modules": "app"},
            {"modules": ["1abc"]},
            {"timeout": 0},
            {"timeout": True},
            {"timeout": 1e9},
            {"cascade": "yes"},
            {"expect": {"other": "0" * 64}},
            {"expect": {"app.pricing": "XYZ"}},
            {"restore": []},
            {"to_sha256": "short"},
            {"of": "not-an-id"},
            {"op": "rollback", "modules": ["a", "b"]},
            {"op": "undo"},
            {"phase": "run"},
            {"id": 5},
        ],
    )
    def test_bad_commands_are_rejected(self, change):
        """
        Each field that does not fit the schema makes the message a ProtocolViolation.
        """
        from versionload._fleet.protocol import ProtocolViolation, parse_command

        with pytest.raises(ProtocolViolation):
            parse_command(json.dumps(self.GOOD | change).encode())

    @pytest.mark.parametrize(
        "reply",
        [
            {"member": "../x y"},
            {"ok": "true"},
            {"error": 5},
            {"versions": {"a": "1"}},
            {"sha256": {"a": "nothex"}},
            {"phase": "done"},
        ],
    )
    def test_bad_replies_are_rejected(self, reply):
        """
        The operator rejects answers that do not fit the schema.
        """
        from versionload._fleet.protocol import ProtocolViolation, parse_reply

        good = {"v": 1, "id": "ab" * 16, "phase": "prepare", "member": "h:1", "ok": True, "error": None}
        with pytest.raises(ProtocolViolation):
            parse_reply(json.dumps(good | reply).encode())
