"""
`Fleet`: the operator's side, sending a command to every member of a group, all or none.

A command runs in two phases. *Prepare*: every live member checks the command
against its own disk and history and answers ready or why not; nothing changes.
*Commit*: only if every member is ready (and, for a reload without expected hashes,
all read the same bytes), each applies it and answers. If a member fails or does
not answer in time, the operator calls the command off and every member that
applied it undoes it. Only a command every member applied becomes the group's
target (module -> sha256, kept in Redis for members that join later) and the command
that `undo` undoes.

One command at a time per group: the operator holds a lock key in Redis while it
runs. The decision for each command is also kept in Redis (``state:<cmd>``) so that
a member that missed the last message learns it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .. import _arguments as check
from .._errors import InvalidArgumentError
from .._events import emit
from . import protocol
from .errors import FleetBusyError, FleetConnectionError, NoMembersError, NothingToUndoError
from .events import FleetCommandFinished
from .protocol import Command, Keys, ProtocolViolation, Reply
from .redisconn import check_url, connect, connection_lost, is_connection_error, redact_url

if TYPE_CHECKING:
    import redis

#: Progress callback: (phase, members answered, members asked).
Progress = Callable[[str, int, int], object]

#: How long the operator waits for the undo acknowledgements after calling a command off.
ABORT_WAIT = 5.0
#: How long a finished command's decision stays readable for members that missed it.
STATE_TTL_S = 3600


@attrs.frozen
class ModuleState:
    """
    One module as a member runs it: its version number and its source's sha256.

    .. versionadded:: 0.2.0
    """

    module: str
    version: int
    source_sha256: str | None


@attrs.frozen
class MemberInfo:
    """
    What a member's last heartbeat said, and how old it is (seconds).

    ``diverged`` maps the modules whose disk bytes differ from the group's target to
    the sha256 the member's disk has (None: unreadable).

    .. versionadded:: 0.2.0
    """

    member: str
    host: str
    pid: int
    modules: tuple[ModuleState, ...]
    diverged: Mapping[str, str | None]
    busy: bool
    heartbeat_age: float


@attrs.frozen
class FleetResult:
    """
    The outcome of a fleet command.

    Attributes:
        ok: Every member applied it; it is the group's new target.
        applied: The members that applied it (and, when ``ok`` is false, undid it again).
        failed: The members that refused or failed, each with its error text.
        stragglers: The members that did not answer in time.
        rolled_back: The members that applied it and confirmed they undid it.
        command: The command's id, as in the members' events.

    .. versionadded:: 0.2.0
    """

    ok: bool
    applied: tuple[str, ...] = ()
    failed: Mapping[str, str] = attrs.field(factory=dict)
    stragglers: tuple[str, ...] = ()
    rolled_back: tuple[str, ...] = ()
    command: str = ""

    def __bool__(self) -> bool:
        return self.ok


def _check_sha(value: object, what: str) -> str:
    if not protocol.is_sha256(value):
        raise InvalidArgumentError(f"{what} must be a sha256 in lowercase hex (64 digits), got {value!r}")
    return value  # type: ignore[return-value]


class Fleet:
    """
    The operator's handle on a fleet group; see `versionload.fleet.Fleet`.

    .. versionadded:: 0.2.0
    """

    def __init__(self, url: str, *, group: str) -> None:
        self._url = check_url(url)
        if not protocol.is_group(group):
            raise InvalidArgumentError(f"group must be 1-64 letters, digits, '_', '.' or '-', got {group!r}")
        self._group = group
        self._keys = Keys(group)
        self._client: redis.Redis | None = None

    def __repr__(self) -> str:
        return f"<versionload.fleet.Fleet {self._group!r} at {redact_url(self._url)}>"

    @property
    def group(self) -> str:
        return self._group

    def close(self) -> None:
        """
        Close the connection to Redis (a later call connects again).
        """
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = connect(self._url, group=self._group)
        return self._client

    def _lost(self, error: BaseException) -> FleetConnectionError:
        self.close()
        return connection_lost(self._url, error, group=self._group)

    # -- reading ---------------------------------------------------------------------------

    def members(self) -> tuple[MemberInfo, ...]:
        """
        The live members (those whose heartbeat has not expired), sorted by id.

        Raises:
            FleetConnectionError: Redis cannot be reached.
        """
        try:
            return self._members()
        except Exception as error:
            if is_connection_error(error):
                raise self._lost(error) from None
            raise

    def _members(self) -> tuple[MemberInfo, ...]:
        client = self._redis()
        # The roster lists ids; the heartbeat keys say who is alive. Ids whose key
        # expired are dropped from the roster here, so it does not grow forever.
        ids = sorted(protocol.text(member) for member in client.smembers(self._keys.roster))
        if not ids:
            return ()
        pipe = client.pipeline(transaction=False)
        for member in ids:
            key = self._keys.member(member)
            pipe.get(key)
            pipe.pttl(key)
        answers = pipe.execute()
        found, gone = [], []
        for index, member in enumerate(ids):
            raw, ttl_ms = answers[2 * index], answers[2 * index + 1]
            info = _member_info(raw, ttl_ms)
            if info is not None and info.member == member:
                found.append(info)
            elif raw is None:
                gone.append(member)
        if gone:
            client.srem(self._keys.roster, *gone)
        return tuple(found)

    def target(self) -> dict[str, str]:
        """
        The group's target: module -> the sha256 every member should run.
        """
        try:
            raw = self._redis().hgetall(self._keys.target)
        except Exception as error:
            if is_connection_error(error):
                raise self._lost(error) from None
            raise
        return {protocol.text(name): protocol.text(digest) for name, digest in raw.items()}

    # -- commands ----------------------------------------------------------------------------

    def reload(
        self,
        modules: str | Iterable[str],
        *,
        expect_sha256: str | Mapping[str, str] | None = None,
        cascade: bool = False,
        prune: bool = False,
        timeout: float = 30.0,
        progress: Progress | None = None,
    ) -> FleetResult:
        """
        Reload ``modules`` on every member, all or none; see `versionload.fleet.Fleet`.
        """
        names = _module_names(modules)
        if isinstance(expect_sha256, str):
            if len(names) != 1:
                raise InvalidArgumentError("a single expect_sha256 needs a single module; pass a mapping")
            expect = {names[0]: _check_sha(expect_sha256, "expect_sha256")}
        elif expect_sha256 is None:
            expect = {}
        elif isinstance(expect_sha256, Mapping):
            expect = {
                name: _check_sha(digest, f"expect_sha256[{name!r}]") for name, digest in expect_sha256.items()
            }
            if not set(expect) <= set(names):
                raise InvalidArgumentError("expect_sha256 names a module that is not reloaded")
        else:
            raise InvalidArgumentError(f"expect_sha256 must be a sha256 or a mapping, got {expect_sha256!r}")
        for flag, value in (("cascade", cascade), ("prune", prune)):
            if not isinstance(value, bool):
                raise InvalidArgumentError(f"{flag} must be a bool, got {value!r}")
        prepare = Command(
            id=uuid.uuid4().hex,
            phase="prepare",
            op="reload",
            modules=names,
            expect=expect,
            cascade=cascade,
            prune=prune,
            timeout=check.seconds(timeout, "timeout", most=3600),
        )
        return self._run(prepare, same_bytes=not expect, progress=progress)

    def rollback(
        self,
        module: str,
        *,
        to_sha256: str | None = None,
        timeout: float = 30.0,
        progress: Progress | None = None,
    ) -> FleetResult:
        """
        Roll ``module`` back on every member, all or none; see `versionload.fleet.Fleet`.
        """
        (name,) = _module_names([module]) if isinstance(module, str) else _module_names(module)
        prepare = Command(
            id=uuid.uuid4().hex,
            phase="prepare",
            op="rollback",
            modules=(name,),
            to_sha256=None if to_sha256 is None else _check_sha(to_sha256, "to_sha256"),
            timeout=check.seconds(timeout, "timeout", most=3600),
        )
        return self._run(prepare, same_bytes=False, progress=progress)

    def undo(self, *, timeout: float = 30.0, progress: Progress | None = None) -> FleetResult:
        """
        Undo the group's last command on every member, all or none; see `versionload.fleet.Fleet`.
        """
        timeout = check.seconds(timeout, "timeout", most=3600)
        try:
            raw = self._redis().get(self._keys.last)
        except Exception as error:
            if is_connection_error(error):
                raise self._lost(error) from None
            raise
        last = _last_record(raw)
        if last is None:
            raise NothingToUndoError(f"group {self._group!r} has no command to undo", group=self._group)
        prepare = Command(
            id=uuid.uuid4().hex,
            phase="prepare",
            op="undo",
            modules=last["modules"],
            of=last["id"],
            restore=last["before"],
            timeout=timeout,
        )
        return self._run(prepare, same_bytes=False, progress=progress)

    # -- the two phases -------------------------------------------------------------------------

    def _run(self, prepare: Command, *, same_bytes: bool, progress: Progress | None) -> FleetResult:
        started = time.monotonic()
        try:
            result = self._locked(prepare, same_bytes, progress)
        except FleetConnectionError:
            self._call_off_after_loss(prepare.id)
            raise
        except Exception as error:
            if is_connection_error(error):
                self._call_off_after_loss(prepare.id)
                raise self._lost(error) from None
            raise
        emit(
            FleetCommandFinished(
                module=prepare.modules[0],
                group=self._group,
                command=prepare.id,
                op=prepare.op,
                modules=prepare.modules,
                ok=result.ok,
                applied=result.applied,
                failed=tuple(f"{member}: {text}" for member, text in sorted(result.failed.items())),
                stragglers=result.stragglers,
                rolled_back=result.rolled_back,
                duration_ms=round((time.monotonic() - started) * 1000, 3),
            ),
            (),
        )
        return result

    def _locked(self, prepare: Command, same_bytes: bool, progress: Progress | None) -> FleetResult:
        client = self._redis()
        lock_ms = int((prepare.timeout * 2 + ABORT_WAIT + 10) * 1000)
        if not client.set(self._keys.lock, prepare.id, nx=True, px=lock_ms):
            raise FleetBusyError(f"another command of group {self._group!r} is running", group=self._group)
        try:
            return self._two_phases(client, prepare, same_bytes, progress)
        finally:
            # Release only our own lock (a compare-and-delete, so we never free another's).
            client.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
                "return 0",
                1,
                self._keys.lock,
                prepare.id,
            )

    def _two_phases(
        self, client: redis.Redis, prepare: Command, same_bytes: bool, progress: Progress | None
    ) -> FleetResult:
        members = {info.member for info in self._members()}
        if not members:
            raise NoMembersError(f"group {self._group!r} has no live member", group=self._group)
        deadline = time.monotonic() + prepare.timeout
        state_key = self._keys.state(prepare.id)
        client.set(state_key, "prepare", ex=STATE_TTL_S)
        client.publish(self._keys.channel, prepare.encode())
        ready = self._collect(client, prepare.id, "prepare", members, deadline, progress, accept_others=True)
        failed = {member: reply.error or "not ready" for member, reply in ready.items() if not reply.ok}
        stragglers = tuple(sorted(members - set(ready)))
        if same_bytes and not failed:
            failed = _disagreements(prepare.modules, ready)
        if failed or stragglers:
            self._decide(client, prepare, "aborted")
            return FleetResult(ok=False, failed=failed, stragglers=stragglers, command=prepare.id)

        client.set(state_key, "commit", ex=STATE_TTL_S)
        client.publish(self._keys.channel, _phase(prepare, "commit"))
        committed = self._collect(client, prepare.id, "commit", set(ready), deadline, progress)
        applied = tuple(sorted(member for member, reply in committed.items() if reply.ok))
        failed = {member: reply.error or "failed" for member, reply in committed.items() if not reply.ok}
        stragglers = tuple(sorted(set(ready) - set(committed)))
        if failed or stragglers:
            self._decide(client, prepare, "aborted")
            acks = self._collect(
                client,
                prepare.id,
                "abort",
                set(applied),
                time.monotonic() + min(ABORT_WAIT, prepare.timeout),
                progress,
            )
            rolled_back = tuple(sorted(member for member, reply in acks.items() if reply.ok))
            return FleetResult(
                ok=False,
                applied=applied,
                failed=failed,
                stragglers=stragglers,
                rolled_back=rolled_back,
                command=prepare.id,
            )
        self._record_target(client, prepare, committed)
        self._decide(client, prepare, "done")
        return FleetResult(ok=True, applied=applied, command=prepare.id)

    def _decide(self, client: redis.Redis, prepare: Command, decision: str) -> None:
        client.set(self._keys.state(prepare.id), decision, ex=STATE_TTL_S)
        client.publish(self._keys.channel, _phase(prepare, "abort" if decision == "aborted" else "done"))

    def _call_off_after_loss(self, command_id: str) -> None:
        """
        After losing Redis mid-command, tell the members if the server is back; they
        undo the command by themselves anyway when they find no decision.
        """
        try:
            self.close()
            client = self._redis()
            client.set(self._keys.state(command_id), "aborted", ex=STATE_TTL_S)
            client.publish(
                self._keys.channel,
                json.dumps({"v": protocol.VERSION, "id": command_id, "phase": "abort", "op": "reload"}),
            )
        except Exception:  # noqa: BLE001 - best effort: the members decide without it
            self.close()

    def _record_target(self, client: redis.Redis, prepare: Command, committed: Mapping[str, Reply]) -> None:
        before = {
            name: (protocol.text(digest) if digest else None)
            for name, digest in zip(
                prepare.modules, client.hmget(self._keys.target, list(prepare.modules)), strict=True
            )
        }
        after: dict[str, str | None] = {}
        for name in prepare.modules:
            hashes = {reply.sha256.get(name) for reply in committed.values()}
            after[name] = hashes.pop() if len(hashes) == 1 else None
        pipe = client.pipeline(transaction=True)
        for name, digest in after.items():
            if digest is None:
                pipe.hdel(self._keys.target, name)
            else:
                pipe.hset(self._keys.target, name, digest)
        pipe.set(
            self._keys.last,
            json.dumps(
                {"id": prepare.id, "op": prepare.op, "modules": list(prepare.modules), "before": before}
            ),
        )
        pipe.incr(self._keys.generation)
        pipe.execute()

    def _collect(
        self,
        client: redis.Redis,
        command_id: str,
        phase: str,
        expected: set[str],
        deadline: float,
        progress: Progress | None,
        *,
        accept_others: bool = False,
    ) -> dict[str, Reply]:
        """
        The answers to one phase, until every expected member answered or the deadline.
        """
        answers: dict[str, Reply] = {}
        key = self._keys.reply(command_id)
        waiting = set(expected)
        if progress is not None:
            progress(phase, 0, len(expected))
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            popped = client.blpop([key], timeout=max(0.01, min(left, 0.5)))
            if popped is None:
                self._check_state(client, command_id)
                continue
            try:
                reply = protocol.parse_reply(popped[1])
            except ProtocolViolation:
                continue  # not an answer we can trust; the member counts as silent
            if reply.id != command_id:
                continue
            if reply.phase != phase:
                # An answer to a later phase can't come before ours; an earlier one is late.
                continue
            if reply.member not in expected and not accept_others:
                continue
            answers[reply.member] = reply
            waiting.discard(reply.member)
            if progress is not None:
                progress(phase, len(answers), len(expected | set(answers)))
        self._check_state(client, command_id)
        return answers

    def _check_state(self, client: redis.Redis, command_id: str) -> None:
        """
        Fail if Redis lost the command's state: it restarted, and the client reconnected
        without telling us. Members undo whatever they applied when they find no decision.
        """
        if not client.exists(self._keys.state(command_id)):
            raise FleetConnectionError(
                f"Redis at {redact_url(self._url)} lost command {command_id} while it ran "
                f"(restarted?); members that applied it undo it",
                group=self._group,
            )


def _phase(prepare: Command, phase: str) -> str:
    return Command(id=prepare.id, phase=phase, op=prepare.op).encode()


def _disagreements(modules: tuple[str, ...], ready: Mapping[str, Reply]) -> dict[str, str]:
    """
    For a reload without expected hashes: the members whose bytes differ from the majority's.
    """
    failed: dict[str, str] = {}
    for name in modules:
        counts: dict[str | None, int] = {}
        for reply in ready.values():
            digest = reply.sha256.get(name)
            counts[digest] = counts.get(digest, 0) + 1
        if len(counts) <= 1:
            continue
        majority = max(counts, key=lambda digest: (counts[digest], digest or ""))
        for member, reply in ready.items():
            digest = reply.sha256.get(name)
            if digest != majority:
                failed[member] = (
                    f"{name}: this member's disk has sha256 {(digest or '?')[:12]}, "
                    f"most members have {(majority or '?')[:12]}"
                )
    return failed


def _module_names(modules: object) -> tuple[str, ...]:
    if isinstance(modules, str):
        modules = (modules,)
    if not isinstance(modules, Iterable):
        raise InvalidArgumentError(f"modules must be module names, got {modules!r}")
    names: tuple[object, ...] = tuple(modules)
    if not names or not all(protocol.is_module_name(name) for name in names):
        raise InvalidArgumentError(f"modules must be one or more dotted module names, got {modules!r}")
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"modules names a module twice: {modules!r}")
    if len(names) > protocol.MAX_MODULES:
        raise InvalidArgumentError(f"at most {protocol.MAX_MODULES} modules per command")
    return tuple(str(name) for name in names)


def _last_record(raw: object) -> dict[str, Any] | None:
    if not isinstance(raw, bytes):
        return None
    try:
        body = json.loads(raw)
        modules = tuple(body["modules"])
        before = dict(body["before"])
    except (ValueError, KeyError, TypeError):
        return None
    if not protocol.is_command_id(body.get("id")) or not modules:
        return None
    if not all(protocol.is_module_name(name) for name in modules):
        return None
    if not all(digest is None or protocol.is_sha256(digest) for digest in before.values()):
        return None
    return {"id": body["id"], "modules": modules, "before": before}


def _member_info(raw: object, ttl_ms: object) -> MemberInfo | None:
    if not isinstance(raw, bytes) or not isinstance(ttl_ms, int) or ttl_ms < 0:
        return None
    try:
        body = json.loads(raw)
        member = body["member"]
        modules = tuple(
            ModuleState(name, int(number), digest if protocol.is_sha256(digest) else None)
            for name, (number, digest) in sorted(body.get("modules", {}).items())
        )
        diverged = {
            name: (entry.get("disk") if protocol.is_sha256(entry.get("disk")) else None)
            for name, entry in body.get("diverged", {}).items()
        }
        host, pid, busy = str(body.get("host", "")), int(body.get("pid", 0)), bool(body.get("busy", False))
        beat_ms = float(body.get("ttl_ms", 0)) or None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not protocol.is_member_name(member):
        return None
    # The heartbeat's age from the key's remaining life, not clocks: members' clocks may differ.
    full_ms = beat_ms if beat_ms else None
    age = max(0.0, (full_ms - ttl_ms) / 1000) if full_ms else 0.0
    return MemberInfo(
        member=member, host=host, pid=pid, modules=modules, diverged=diverged, busy=busy, heartbeat_age=age
    )


__all__ = ["Fleet", "FleetResult", "MemberInfo", "ModuleState"]
