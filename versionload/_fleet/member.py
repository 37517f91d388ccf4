"""
`Member`: one process of a fleet group, applying the group's commands to its tracker.

A member owns two daemon threads. The *listener* subscribes to the group's channel
and handles every command in order, so a member never runs two commands at once;
all of its command state (prepared plans, applied commands waiting for the outcome,
records for undo) is touched only by that thread. The *heartbeat* thread keeps the
member's key alive (SET with a TTL) and reads the group's target generation, which
tells the listener when to converge.

Commands carry names, numbers and hashes; the member runs only source from its own
disk, through its tracker (which enforces its ``allowed_roots``). A message that
does not fit the protocol is logged as ``fleet.message_rejected`` and ignored; no
error in handling a message ends the listener.

A member that applied a command and has not heard the outcome (``done`` or
``abort``) by its deadline, or that lost its connection meanwhile, asks Redis for
the operator's decision and undoes the command unless it is ``done``: a command
interrupted by a Redis restart is undone everywhere rather than left half-applied.

A process forked from a member (a pre-fork server's worker) joins as itself: the
child drops the parent's connections without touching their sockets, takes its own
member id, and starts its own threads (``os.register_at_fork``).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fnmatch
import hashlib
import json
import os
import socket
import sys
import sysconfig
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import InvalidArgumentError, VersionLoadError
from .._events import because, report_error
from . import protocol
from .errors import FleetError
from .events import (
    FleetAborted,
    FleetApplied,
    FleetCommandReceived,
    FleetConverged,
    FleetEvent,
    FleetJoined,
    FleetLeft,
    FleetMessageRejected,
    FleetPrepared,
)
from .protocol import Command, Keys, ProtocolViolation, Reply
from .redisconn import check_url, connect, is_connection_error, redact_url

if TYPE_CHECKING:
    import redis

    from .._snapshot import ModuleVersion
    from .._tracker import Tracker

DEFAULT_HEARTBEAT = 2.0
#: A heartbeat key lives this many intervals: a member is gone after missing two beats.
TTL_BEATS = 3
#: Seconds past a command's timeout before a member asks Redis for the outcome itself.
DECISION_GRACE = 2.0
#: How long answers stay in Redis for an operator that reads them late.
REPLY_TTL_S = 120
#: Commands whose module versions a member remembers for `Fleet.undo`.
RECORDS_KEPT = 16


def default_tracker() -> Tracker:
    """
    The process's default tracker (the one ``versionload.install()`` configures).
    """
    from .._tracker import default_tracker as door

    return door()


def _library_dirs() -> tuple[str, ...]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    paths = sysconfig.get_paths()
    found = {os.path.realpath(paths[name]) for name in names if name in paths}
    found.add(os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    return tuple(sorted(found))


def _under(path: str, roots: Iterable[str]) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        try:
            if os.path.commonpath([real, root]) == root:
                return True
        except ValueError:
            continue
    return False


def _member_id(name: str | None) -> str:
    if name is not None:
        return name
    host = "".join(c if c.isalnum() or c in "-._" else "-" for c in socket.gethostname())[:100]
    return f"{host or 'host'}:{os.getpid()}"


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    cause = error.__cause__
    if cause is not None and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text[:2000]


@attrs.define
class _Plan:
    """
    A prepared command: for each module, the version to roll back to (None: reload).
    """

    command: Command
    steps: tuple[tuple[str, int | None], ...]
    deadline: float


@attrs.define
class _Applied:
    """
    A command this member applied and whose outcome it awaits; ``before`` maps each
    module that changed to its version before the command, in the order applied.
    """

    command: Command
    before: dict[str, int]
    deadline: float


_members: dict[str, Member] = {}
_members_lock = threading.Lock()


def join(
    url: str,
    *,
    group: str,
    name: str | None = None,
    tracker: Tracker | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
    include: str | Iterable[str] | None = None,
) -> Member:
    """
    Make this process a member of ``group``; see `versionload.fleet.join`.
    """
    url = check_url(url)
    if not protocol.is_group(group):
        raise InvalidArgumentError(f"group must be 1-64 letters, digits, '_', '.' or '-', got {group!r}")
    if name is not None and not protocol.is_member_name(name):
        raise InvalidArgumentError(f"name must be 1-160 letters, digits or '_.:-+/@', got {name!r}")
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or not 0.05 <= heartbeat <= 300:
        raise InvalidArgumentError(f"heartbeat must be seconds in [0.05, 300], got {heartbeat!r}")
    patterns = _patterns(include)
    if tracker is None:
        tracker = default_tracker()
    with _members_lock:
        existing = _members.get(group)
        if existing is not None and existing.running:
            if existing.tracker is not tracker:
                raise InvalidArgumentError(
                    f"this process is already a member of group {group!r} with another tracker"
                )
            return existing
        member = Member(
            url, group=group, name=name, tracker=tracker, heartbeat=float(heartbeat), include=patterns
        )
        member.start()
        _members[group] = member
        return member


def _patterns(include: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if include is None:
        return None
    items = (include,) if isinstance(include, str) else tuple(include)
    if not all(isinstance(item, str) for item in items):
        raise InvalidArgumentError(f"include must be module-name patterns, got {include!r}")
    return tuple(items)


class Member:
    """
    This process's membership of a fleet group; made by `versionload.fleet.join`.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        url: str,
        *,
        group: str,
        name: str | None,
        tracker: Tracker,
        heartbeat: float,
        include: tuple[str, ...] | None = None,
    ) -> None:
        self._url = url
        self._group = group
        self._keys = Keys(group)
        self._given_name = name
        self._id = _member_id(name)
        self._tracker = tracker
        self._heartbeat = heartbeat
        self._include = include
        self._libraries = _library_dirs()
        self._init_process_state()
        self._records: collections.OrderedDict[str, dict[str, int]] = collections.OrderedDict()

    def _init_process_state(self) -> None:
        self._stop = threading.Event()
        self._state_lock = threading.Lock()  # guards _diverged and _generation between the threads
        self._client: redis.Redis | None = None
        self._pubsub: Any = None
        self._threads: list[threading.Thread] = []
        self._prepared: dict[str, _Plan] = {}
        self._applied: dict[str, _Applied] = {}
        self._diverged: dict[str, dict[str, str | None]] = {}
        self._generation: bytes | None = None
        self._converged_generation: bytes | None = b"-"
        self._listed_cache: dict[str, bool] = {}
        self._running = False

    def __repr__(self) -> str:
        state = "listening" if self._running else "left"
        return f"<versionload.fleet.Member {self._id} of {self._group!r} at {redact_url(self._url)}, {state}>"

    @property
    def id(self) -> str:
        """
        How the group knows this process: its name, else ``host:pid``.
        """
        return self._id

    @property
    def group(self) -> str:
        return self._group

    @property
    def tracker(self) -> Tracker:
        return self._tracker

    @property
    def running(self) -> bool:
        """
        Whether this member still listens (False after `leave`).
        """
        return self._running

    @property
    def diverged(self) -> dict[str, str | None]:
        """
        Modules whose disk bytes differ from the group's target: module -> the disk's sha256.
        """
        with self._state_lock:
            return {name: entry["disk"] for name, entry in self._diverged.items()}

    def leave(self) -> None:
        """
        Stop listening and remove this member's heartbeat; a second call does nothing.
        """
        with _members_lock:
            if _members.get(self._group) is self:
                del _members[self._group]
        if not self._running:
            return
        self._running = False
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5.0)
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                pipe = client.pipeline(transaction=False)
                pipe.delete(self._keys.member(self._id))
                pipe.srem(self._keys.roster, self._id)
                pipe.execute()
            with contextlib.suppress(Exception):
                client.close()
        self._emit(FleetLeft(module="", group=self._group, member=self._id))

    # -- starting, and starting again after a fork ----------------------------------------

    def start(self) -> None:
        """
        Connect, write the first heartbeat and start listening (`join` calls it once).
        """
        # Connected and subscribed before join returns: a command sent after join
        # reaches this member, and a wrong URL or password is the caller's error.
        self._announce(running=True)
        self._spawn()

    def _announce(self, *, running: bool = False) -> None:
        """
        Connect, write the heartbeat and say ``fleet.joined``: a join, or a rejoin after fork.
        """
        self._connect()
        if running:
            self._running = True
        self._write_heartbeat()
        self._emit(
            FleetJoined(
                module="",
                group=self._group,
                member=self._id,
                host=socket.gethostname(),
                pid=os.getpid(),
                modules=tuple(self._listed()),
            )
        )

    def _spawn(self) -> None:
        self._threads = [
            threading.Thread(target=self._listen, name=f"versionload-fleet-{self._group}", daemon=True),
            threading.Thread(
                target=self._beat, name=f"versionload-fleet-{self._group}-heartbeat", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def after_fork_in_child(self) -> None:
        """
        In a forked child: forget the parent's connections and threads, and join as itself.
        """
        running = self._running
        # The parent's sockets stay the parent's: drop the objects without closing them.
        self._init_process_state()
        self._id = f"{self._given_name}+{os.getpid()}" if self._given_name else _member_id(None)
        if running:
            self._running = True
            self._threads = [
                threading.Thread(target=self._rejoin, name=f"versionload-fleet-{self._group}", daemon=True)
            ]
            self._threads[0].start()

    def _rejoin(self) -> None:
        for attempt in range(50):
            if self._stop.is_set():
                return
            try:
                self._start_threads_after_fork()
                return
            except Exception as error:  # noqa: BLE001 - retried, then reported
                if attempt == 49:
                    report_error(error, f"versionload: fleet member {self._id} could not rejoin after fork")
                self._stop.wait(min(0.05 * 2**attempt, 1.0))

    def _start_threads_after_fork(self) -> None:
        self._announce()
        heartbeat = threading.Thread(
            target=self._beat, name=f"versionload-fleet-{self._group}-heartbeat", daemon=True
        )
        self._threads.append(heartbeat)
        heartbeat.start()
        self._listen()

    def _connect(self) -> None:
        client = connect(self._url, group=self._group)
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(self._keys.channel)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is not None and message.get("type") == "subscribe":
                break
        else:
            with contextlib.suppress(Exception):
                pubsub.close()
                client.close()
            raise FleetError(
                f"Redis at {redact_url(self._url)} did not confirm the subscription", group=self._group
            )
        previous, self._client, self._pubsub = self._client, client, pubsub
        if previous is not None:
            with contextlib.suppress(Exception):
                previous.close()

    # -- the heartbeat thread ----------------------------------------------------------------

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat):
            try:
                self._write_heartbeat()
            except Exception as error:  # noqa: BLE001 - Redis may be away; the next beat retries
                if not is_connection_error(error):
                    report_error(error, f"versionload: fleet heartbeat of {self._id} failed")

    def _write_heartbeat(self) -> None:
        client = self._client
        if client is None:
            return
        pipe = client.pipeline(transaction=False)
        pipe.set(
            self._keys.member(self._id), self._heartbeat_body(), px=int(self._heartbeat * TTL_BEATS * 1000)
        )
        pipe.sadd(self._keys.roster, self._id)
        pipe.get(self._keys.generation)
        _, _, generation = pipe.execute()
        with self._state_lock:
            self._generation = generation

    def _heartbeat_body(self) -> str:
        modules: dict[str, list[Any]] = {}
        for name in self._listed():
            with contextlib.suppress(VersionLoadError):
                version = self._tracker.current(name)
                modules[name] = [version.number, version.source_sha256]
        with self._state_lock:
            diverged = {name: dict(entry) for name, entry in self._diverged.items()}
        body = {
            "member": self._id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "modules": modules,
            "diverged": diverged,
            "busy": bool(self._applied),
            "ttl_ms": int(self._heartbeat * TTL_BEATS * 1000),
        }
        return json.dumps(body, separators=(",", ":"))

    def _listed(self) -> list[str]:
        """
        The tracked modules this member reports: ``include`` patterns, else the modules
        whose file is neither the standard library's nor an installed package's.
        """
        listed = []
        for name in self._tracker.tracked():
            wanted = self._listed_cache.get(name)
            if wanted is None:
                wanted = self._wants(name)
                self._listed_cache[name] = wanted
            if wanted:
                listed.append(name)
        return listed

    def _wants(self, name: str) -> bool:
        if self._include is not None:
            return any(
                fnmatch.fnmatchcase(name, pattern) or (pattern.endswith(".*") and name == pattern[:-2])
                for pattern in self._include
            )
        try:
            origin = self._tracker.current(name).origin
        except VersionLoadError:
            return False
        return isinstance(origin, str) and origin.endswith(".py") and not _under(origin, self._libraries)

    # -- the listener thread ---------------------------------------------------------------------

    def _listen(self) -> None:
        # Every change this thread makes, and every event it emits, is the fleet's doing.
        with because("fleet"):
            self._listen_for_messages()

    def _listen_for_messages(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                if self._pubsub is None:
                    self._connect()
                    backoff = 0.05
                    self._after_reconnect()
                message = self._pubsub.get_message(timeout=min(0.2, self._heartbeat))
                if message is not None and message.get("type") == "message":
                    self._handle(message.get("data"))
                self._check_deadlines()
                self._maybe_converge()
            except Exception as error:  # noqa: BLE001 - the listener must outlive any one message
                if is_connection_error(error) or isinstance(error, FleetError):
                    self._drop_connection()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 1.0)
                else:
                    report_error(error, f"versionload: fleet member {self._id} failed on a message")
        with contextlib.suppress(Exception):
            if self._pubsub is not None:
                self._pubsub.close()

    def _drop_connection(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        with contextlib.suppress(Exception):
            if pubsub is not None:
                pubsub.close()

    def _after_reconnect(self) -> None:
        # Messages published while we were away are lost (pub/sub keeps nothing): ask
        # for the decision on every command we applied, and look at the target again.
        for command_id in list(self._applied):
            self._settle(command_id, expired=True)
        with self._state_lock:
            self._converged_generation = b"-"

    def _handle(self, data: object) -> None:
        size = len(data) if isinstance(data, (bytes, str)) else 0
        try:
            command = protocol.parse_command(data)
        except ProtocolViolation as violation:
            self._emit(
                FleetMessageRejected(
                    module="", group=self._group, member=self._id, reason=str(violation), size=size
                )
            )
            return
        self._emit(
            FleetCommandReceived(
                module=command.modules[0] if command.modules else "",
                group=self._group,
                member=self._id,
                command=command.id,
                op=command.op,
                phase=command.phase,
                modules=command.modules,
            )
        )
        if command.phase == "prepare":
            self._prepare(command)
            return
        if command.id not in self._prepared and command.id not in self._applied:
            return  # not a command this member took part in
        # A phase message only says "look": the operator writes its decision to Redis
        # before announcing it, so a forged or replayed commit, abort or done (anyone
        # who may publish on the channel can send one) cannot split the group.
        decision = self._decision(command.id)
        if command.phase == "commit" and decision == "commit":
            self._commit(command.id)
        elif decision == "done":
            self._finish(command.id)
        elif decision in (None, "aborted"):
            self._abort(command.id, "the operator called the command off")

    def _decision(self, command_id: str) -> str | None:
        assert self._client is not None
        state = self._client.get(self._keys.state(command_id))
        return None if state is None else protocol.text(state)

    def _reply(self, reply: Reply) -> None:
        assert self._client is not None
        key = self._keys.reply(reply.id)
        pipe = self._client.pipeline(transaction=False)
        pipe.rpush(key, reply.encode())
        pipe.expire(key, REPLY_TTL_S)
        pipe.execute()

    # -- prepare --------------------------------------------------------------------------------

    def _prepare(self, command: Command) -> None:
        shas: dict[str, str | None] = {}
        versions: dict[str, int] = {}
        try:
            if command.op == "reload":
                steps = self._prepare_reload(command, shas, versions)
            elif command.op == "rollback":
                steps = self._prepare_rollback(command, shas, versions)
            else:
                steps = self._prepare_undo(command, shas, versions)
        except _NotReady as reason:
            error: str | None = str(reason)
        else:
            error = None
            self._prepared[command.id] = _Plan(
                command, steps, time.monotonic() + command.timeout + DECISION_GRACE
            )
        self._emit(
            FleetPrepared(
                module=command.modules[0],
                group=self._group,
                member=self._id,
                command=command.id,
                op=command.op,
                modules=command.modules,
                ready=error is None,
                source_sha256=tuple(shas.get(name) or "" for name in command.modules),
                error=error,
            )
        )
        self._reply(
            Reply(
                id=command.id,
                phase="prepare",
                member=self._id,
                ok=error is None,
                error=error,
                sha256=shas,
                versions=versions,
            )
        )

    def _current(self, name: str) -> ModuleVersion:
        try:
            return self._tracker.current(name)
        except VersionLoadError as error:
            raise _NotReady(f"{name}: {error}") from None

    def _prepare_reload(
        self, command: Command, shas: dict[str, str | None], versions: dict[str, int]
    ) -> tuple[tuple[str, int | None], ...]:
        for name in command.modules:
            current = self._current(name)
            module = sys.modules.get(name)
            spec = getattr(module, "__spec__", None)
            path = getattr(spec, "origin", None)
            if not isinstance(path, str) or not path.endswith(".py") or not os.path.isfile(path):
                raise _NotReady(f"{name}: has no Python source file on this member's disk")
            roots = self._tracker.allowed_roots
            if roots is not None and not _under(path, roots):
                raise _NotReady(f"{name}: its file lies outside this member's allowed_roots")
            try:
                with open(path, "rb") as file:
                    data = file.read()
            except OSError as error:
                raise _NotReady(f"{name}: cannot read its source: {error.strerror}") from None
            digest = hashlib.sha256(data).hexdigest()
            shas[name] = digest
            versions[name] = current.number
            expected = command.expect.get(name)
            if expected is not None and expected != digest:
                raise _NotReady(
                    f"{name}: this member's disk has sha256 {digest[:12]}, expected {expected[:12]}"
                )
            try:
                compile(data, path, "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as error:
                raise _NotReady(f"{name}: does not compile: {_error_text(error)}") from None
        return tuple((name, None) for name in command.modules)

    def _prepare_rollback(
        self, command: Command, shas: dict[str, str | None], versions: dict[str, int]
    ) -> tuple[tuple[str, int | None], ...]:
        (name,) = command.modules
        current = self._current(name)
        history = self._tracker.history(name)
        if command.to_sha256 is not None:
            matching = [version for version in history if version.source_sha256 == command.to_sha256]
            if current.source_sha256 == command.to_sha256:
                matching = [current]
            if not matching:
                raise _NotReady(
                    f"{name}: no version with sha256 {command.to_sha256[:12]} in this member's history"
                )
            target = matching[-1]
        else:
            earlier = [version for version in history if version.number < current.number]
            if not earlier:
                raise _NotReady(
                    f"{name}: no version before version {current.number} in this member's history"
                )
            target = earlier[-1]
        shas[name] = target.source_sha256
        versions[name] = target.number
        return ((name, target.number),)

    def _prepare_undo(
        self, command: Command, shas: dict[str, str | None], versions: dict[str, int]
    ) -> tuple[tuple[str, int | None], ...]:
        record = self._records.get(command.of or "")
        steps: list[tuple[str, int | None]] = []
        if record is not None:
            # This member applied the command: put back exactly the versions it had.
            for name, number in reversed(record.items()):
                numbers = {version.number: version for version in self._history(name)}
                if number not in numbers:
                    raise _NotReady(f"{name}: version {number} was pruned from this member's history")
                steps.append((name, number))
                shas[name] = numbers[number].source_sha256
                versions[name] = number
            return tuple(steps)
        for name in command.modules:
            wanted = command.restore.get(name)
            current = self._current(name)
            if wanted is None:
                raise _NotReady(
                    f"{name}: this member did not apply the command and the group had no hash before it"
                )
            matching = [version for version in self._history(name) if version.source_sha256 == wanted]
            if current.source_sha256 == wanted:
                matching = [current]
            if not matching:
                raise _NotReady(f"{name}: no version with sha256 {wanted[:12]} in this member's history")
            steps.append((name, matching[-1].number))
            shas[name] = wanted
            versions[name] = matching[-1].number
        return tuple(steps)

    def _history(self, name: str) -> tuple[ModuleVersion, ...]:
        try:
            return self._tracker.history(name)
        except VersionLoadError as error:
            raise _NotReady(f"{name}: {error}") from None

    # -- commit, abort, done ----------------------------------------------------------------------

    def _commit(self, command_id: str) -> None:
        plan = self._prepared.pop(command_id, None)
        if plan is None:
            return  # prepared by others only (we joined later, or our plan expired): not ours
        command = plan.command
        watched = self._tracker.tracked() if command.cascade else tuple(name for name, _ in plan.steps)
        before = self._numbers(watched)
        try:
            self._execute(plan)
        except Exception as error:  # noqa: BLE001 - the module's own code may raise anything
            undone = self._undo(before, self._changed(before))
            self._aborted(command, undone, _error_text(error))
            self._reply(
                Reply(id=command.id, phase="commit", member=self._id, ok=False, error=_error_text(error))
            )
            return
        changed = self._changed(before)
        # Recorded before answering: if the answer cannot be sent, the member still
        # knows what to undo when it learns the outcome.
        self._applied[command.id] = _Applied(
            command, changed, time.monotonic() + command.timeout + DECISION_GRACE
        )
        shown = tuple(dict.fromkeys((*command.modules, *changed)))
        versions = self._numbers(shown)
        self._emit(
            FleetApplied(
                module=command.modules[0],
                group=self._group,
                member=self._id,
                command=command.id,
                op=command.op,
                modules=shown,
                versions=tuple(versions[name] for name in shown if name in versions),
            )
        )
        self._reply(
            Reply(
                id=command.id,
                phase="commit",
                member=self._id,
                ok=True,
                sha256=self._hashes(shown),
                versions=versions,
            )
        )

    def _execute(self, plan: _Plan) -> None:
        command = plan.command
        tracker = self._tracker
        if command.op != "reload":
            for name, number in plan.steps:
                if number is not None and tracker.current(name).number != number:
                    tracker.rollback(name, number, trigger=f"fleet:{command.id}")
            return
        trigger, prune = f"fleet:{command.id}", command.prune
        if command.cascade:
            for name in command.modules:
                tracker.reload(name, cascade=True, prune=prune, trigger=trigger)
        elif len(command.modules) == 1:
            tracker.reload(command.modules[0], prune=prune, trigger=trigger)
        else:
            tracker.reload_many(command.modules, prune=prune, trigger=trigger)

    def _aborted(self, command: Command, undone: tuple[str, ...], reason: str) -> None:
        self._emit(
            FleetAborted(
                module=command.modules[0],
                group=self._group,
                member=self._id,
                command=command.id,
                op=command.op,
                modules=command.modules,
                undone=undone,
                reason=reason,
            )
        )

    def _numbers(self, names: Iterable[str]) -> dict[str, int]:
        numbers = {}
        for name in names:
            with contextlib.suppress(VersionLoadError):
                numbers[name] = self._tracker.current(name).number
        return numbers

    def _hashes(self, names: Iterable[str]) -> dict[str, str | None]:
        hashes: dict[str, str | None] = {}
        for name in names:
            with contextlib.suppress(VersionLoadError):
                hashes[name] = self._tracker.current(name).source_sha256
        return hashes

    def _changed(self, before: dict[str, int]) -> dict[str, int]:
        now = self._numbers(before)
        return {name: number for name, number in before.items() if now.get(name, number) != number}

    def _undo(self, before: dict[str, int], changed: dict[str, int]) -> tuple[str, ...]:
        undone = []
        for name in reversed(list(changed)):
            try:
                self._tracker.rollback(name, before[name], trigger="fleet:abort")
                undone.append(name)
            except VersionLoadError as error:
                report_error(error, f"versionload: fleet member {self._id} could not undo {name}")
        return tuple(undone)

    def _abort(self, command_id: str, reason: str) -> None:
        plan = self._prepared.pop(command_id, None)
        applied = self._applied.pop(command_id, None)
        if applied is None:
            if plan is not None:
                command = plan.command
                self._emit(
                    FleetAborted(
                        module=command.modules[0],
                        group=self._group,
                        member=self._id,
                        command=command.id,
                        op=command.op,
                        modules=command.modules,
                        undone=(),
                        reason=reason,
                    )
                )
            return
        command = applied.command
        undone = self._undo(applied.before, applied.before)
        self._aborted(command, undone, reason)
        shown = tuple(applied.before)
        with contextlib.suppress(Exception):
            self._reply(
                Reply(
                    id=command_id,
                    phase="abort",
                    member=self._id,
                    ok=len(undone) == len(applied.before),
                    error=None if len(undone) == len(applied.before) else "could not undo every module",
                    sha256=self._hashes(shown),
                    versions=self._numbers(shown),
                )
            )

    def _finish(self, command_id: str) -> None:
        self._prepared.pop(command_id, None)
        applied = self._applied.pop(command_id, None)
        if applied is not None:
            self._records[command_id] = applied.before
            while len(self._records) > RECORDS_KEPT:
                self._records.popitem(last=False)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for command_id, plan in list(self._prepared.items()):
            if now > plan.deadline:
                self._abort(command_id, "no commit arrived in time")
        for command_id, applied in list(self._applied.items()):
            if now > applied.deadline:
                self._settle(command_id, expired=True)

    def _settle(self, command_id: str, *, expired: bool) -> None:
        """
        Learn a command's outcome from Redis: keep it if it is done, else undo it.
        """
        state = self._decision(command_id)
        if state == "done":
            self._finish(command_id)
        elif state == "commit" and not expired:
            return
        else:
            self._abort(command_id, "no outcome from the operator (connection lost or operator gone)")

    # -- convergence ---------------------------------------------------------------------------

    def _maybe_converge(self) -> None:
        with self._state_lock:
            generation, seen = self._generation, self._converged_generation
        if generation == seen or self._applied or self._prepared:
            return
        assert self._client is not None
        target = self._client.hgetall(self._keys.target)
        with self._state_lock:
            self._converged_generation = generation
        listed = set(self._listed())
        for raw_name, raw_sha in target.items():
            name, digest = protocol.text(raw_name), protocol.text(raw_sha)
            if name in listed and protocol.is_sha256(digest):
                self._converge(name, digest)

    def _converge(self, name: str, target: str) -> None:
        try:
            current = self._tracker.current(name)
        except VersionLoadError:
            return
        if current.source_sha256 == target:
            self._set_diverged(name, None)
            return
        status = "diverged"
        disk: str | None = None
        try:
            matching = [version for version in self._tracker.history(name) if version.source_sha256 == target]
            if matching:
                self._tracker.rollback(name, matching[-1].number, trigger="fleet:converge")
                status, disk = "converged", target
            else:
                disk = self._disk_sha(name)
                if disk == target:
                    self._tracker.reload(name, trigger="fleet:converge")
                    if self._tracker.current(name).source_sha256 == target:
                        status = "converged"
        except VersionLoadError as error:
            report_error(error, f"versionload: fleet member {self._id} could not converge {name}")
        self._set_diverged(name, None if status == "converged" else {"target": target, "disk": disk})
        self._emit(
            FleetConverged(
                module=name,
                group=self._group,
                member=self._id,
                status=status,
                version=self._numbers([name]).get(name, current.number),
                target_sha256=target,
                disk_sha256=disk,
            )
        )

    def _disk_sha(self, name: str) -> str | None:
        path = getattr(getattr(sys.modules.get(name), "__spec__", None), "origin", None)
        if not isinstance(path, str):
            return None
        try:
            with open(path, "rb") as file:
                return hashlib.sha256(file.read()).hexdigest()
        except OSError:
            return None

    def _set_diverged(self, name: str, entry: dict[str, str | None] | None) -> None:
        with self._state_lock:
            if entry is None:
                self._diverged.pop(name, None)
            else:
                self._diverged[name] = entry

    def _emit(self, event: FleetEvent) -> None:
        self._tracker.emit(event)


class _NotReady(Exception):
    """
    Why this member cannot apply a command (becomes the prepare answer's error text).
    """


def _after_fork_in_child() -> None:
    global _members_lock
    _members_lock = threading.Lock()  # a parent thread may have held it at the fork
    # A multiprocessing child ends with os._exit, so atexit never runs there; its
    # own exit hooks do, once the child has cleared what it inherited.
    forkers = sys.modules.get("multiprocessing.util")
    for member in list(_members.values()):
        member.after_fork_in_child()
        if forkers is not None:
            forkers.register_after_fork(member, _leave_at_child_exit)


def _leave_at_child_exit(member: Member) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(member, member.leave, exitpriority=10)


def _leave_all() -> None:
    for member in list(_members.values()):
        with contextlib.suppress(Exception):
            member.leave()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_leave_all)
