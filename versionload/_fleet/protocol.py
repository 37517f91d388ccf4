"""
The fleet's wire format: Redis key names, and the messages' schema and validation.

Pure data: no I/O. Messages are JSON objects carrying only module names, version
numbers, hashes and ids, never code or paths. Both sides validate everything they
read; a message that does not fit raises `ProtocolViolation`, which the reader logs
and ignores. A member never takes a Redis key from a message: it derives the key to
answer on from the group and the command id.

Keys of a group ``G`` (all under ``versionload:fleet:G:``)::

    member:<id>   a member's heartbeat (JSON), with a TTL        SET PX
    members       the ids of members that ever beat (no SCAN)    SADD / SMEMBERS, SREM when expired
    commands      the channel members listen on                  PUBLISH / SUBSCRIBE
    reply:<cmd>   a list the members push their answers to       RPUSH / BLPOP, with a TTL
    state:<cmd>   the operator's decision for a command          SET (prepare|commit|done|aborted)
    target        module -> sha256 the group should run          HSET / HGETALL
    generation    bumped whenever target changes                 INCR / GET
    last          the last command that changed target (undo)    SET (JSON)
    lock          held by the operator while a command runs      SET NX PX
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_MODULES = 256

OPS = ("reload", "rollback", "undo")
PHASES = ("prepare", "commit", "abort", "done")
REPLY_PHASES = ("prepare", "commit", "abort")

_GROUP = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_MEMBER = re.compile(r"[A-Za-z0-9_.:\-+/@]{1,160}")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMAND_ID = re.compile(r"[0-9a-f]{32}")


class ProtocolViolation(Exception):
    """
    A message does not fit the schema; the text says why (never quoting the message).
    """


def text(value: object) -> str:
    """
    A Redis reply as text (the client gives bytes; a str passes through).
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def is_group(value: object) -> bool:
    return isinstance(value, str) and _GROUP.fullmatch(value) is not None


def is_member_name(value: object) -> bool:
    return isinstance(value, str) and _MEMBER.fullmatch(value) is not None


def is_module_name(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 200 and _MODULE.fullmatch(value) is not None


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def is_command_id(value: object) -> bool:
    return isinstance(value, str) and _COMMAND_ID.fullmatch(value) is not None


@attrs.frozen
class Keys:
    """
    The Redis keys of one group.
    """

    group: str

    @property
    def prefix(self) -> str:
        return f"versionload:fleet:{self.group}:"

    def member(self, member_id: str) -> str:
        return f"{self.prefix}member:{member_id}"

    @property
    def roster(self) -> str:
        return f"{self.prefix}members"

    @property
    def channel(self) -> str:
        return f"{self.prefix}commands"

    def reply(self, command: str) -> str:
        return f"{self.prefix}reply:{command}"

    def state(self, command: str) -> str:
        return f"{self.prefix}state:{command}"

    @property
    def target(self) -> str:
        return f"{self.prefix}target"

    @property
    def generation(self) -> str:
        return f"{self.prefix}generation"

    @property
    def last(self) -> str:
        return f"{self.prefix}last"

    @property
    def lock(self) -> str:
        return f"{self.prefix}lock"


@attrs.frozen
class Command:
    """
    One phase of one command, as published on the group's channel.

    ``expect`` maps modules to the sha256 each member must read (reload); ``to_sha256``
    is the version to roll back to (rollback); ``of`` and ``restore`` name the command
    an undo undoes and the hashes the group ran before it.
    """

    id: str
    phase: str
    op: str
    modules: tuple[str, ...] = ()
    expect: Mapping[str, str] = attrs.Factory(dict)
    cascade: bool = False
    prune: bool = False
    to_sha256: str | None = None
    of: str | None = None
    restore: Mapping[str, str | None] = attrs.Factory(dict)
    timeout: float = 30.0

    def encode(self) -> str:
        body: dict[str, Any] = {"v": VERSION, "id": self.id, "phase": self.phase, "op": self.op}
        if self.phase == "prepare":
            body.update(
                modules=list(self.modules),
                expect=dict(self.expect),
                cascade=self.cascade,
                prune=self.prune,
                to_sha256=self.to_sha256,
                of=self.of,
                restore=dict(self.restore),
                timeout=self.timeout,
            )
        return json.dumps(body, separators=(",", ":"))


@attrs.frozen
class Reply:
    """
    A member's answer to one phase of a command.

    ``sha256`` and ``versions`` describe the modules concerned: what the member read
    (prepare) or now runs (commit, abort).
    """

    id: str
    phase: str
    member: str
    ok: bool
    error: str | None = None
    sha256: Mapping[str, str | None] = attrs.Factory(dict)
    versions: Mapping[str, int] = attrs.Factory(dict)

    def encode(self) -> str:
        return json.dumps(
            {
                "v": VERSION,
                "id": self.id,
                "phase": self.phase,
                "member": self.member,
                "ok": self.ok,
                "error": self.error,
                "sha256": dict(self.sha256),
                "versions": dict(self.versions),
            },
            separators=(",", ":"),
        )


def _load(raw: object) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if not isinstance(raw, bytes):
        raise ProtocolViolation(f"not bytes but {type(raw).__name__}")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(f"too long ({len(raw)} bytes, at most {MAX_MESSAGE_BYTES})")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolViolation("not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolViolation("not a JSON object")
    if body.get("v") != VERSION:
        raise ProtocolViolation("unknown protocol version")
    if not is_command_id(body.get("id")):
        raise ProtocolViolation("bad command id")
    return body


def _choice(body: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = body.get(key)
    if not isinstance(value, str) or value not in choices:
        raise ProtocolViolation(f"bad {key}")
    return value


def _flag(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise ProtocolViolation(f"{key} is not a bool")
    return value


def _modules(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_MODULES:
        raise ProtocolViolation("modules is not a list of at most 256 names")
    if not all(is_module_name(name) for name in value) or len(set(value)) != len(value):
        raise ProtocolViolation("modules holds a bad or repeated module name")
    return tuple(value)


def _hashes(value: object, key: str, *, nullable: bool) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) > MAX_MODULES:
        raise ProtocolViolation(f"{key} is not an object")
    for name, digest in value.items():
        if not is_module_name(name) or not (is_sha256(digest) or (nullable and digest is None)):
            raise ProtocolViolation(f"{key} maps a bad module name or hash")
    return dict(value)


def _optional_sha(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not is_sha256(value):
        raise ProtocolViolation(f"{key} is not a sha256")
    return value


def parse_command(raw: object) -> Command:
    """
    Decode and check one message from the channel.

    Raises:
        ProtocolViolation: anything that does not fit; the reader ignores the message.
    """
    body = _load(raw)
    phase = _choice(body, "phase", PHASES)
    op = _choice(body, "op", OPS)
    if phase != "prepare":
        return Command(id=body["id"], phase=phase, op=op)
    modules = _modules(body.get("modules"))
    timeout = body.get("timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise ProtocolViolation("timeout is not a number of seconds in (0, 3600]")
    of = body.get("of")
    if of is not None and not is_command_id(of):
        raise ProtocolViolation("of is not a command id")
    command = Command(
        id=body["id"],
        phase=phase,
        op=op,
        modules=modules,
        expect=_hashes(body.get("expect", {}), "expect", nullable=False),
        cascade=_flag(body, "cascade"),
        prune=_flag(body, "prune"),
        to_sha256=_optional_sha(body, "to_sha256"),
        of=of,
        restore=_hashes(body.get("restore", {}), "restore", nullable=True),
        timeout=float(timeout),
    )
    if not set(command.expect) <= set(modules) or not set(command.restore) <= set(modules):
        raise ProtocolViolation("expect or restore names a module the command does not")
    if op == "rollback" and len(modules) != 1:
        raise ProtocolViolation("a rollback names exactly one module")
    if op == "undo" and command.of is None:
        raise ProtocolViolation("an undo names the command it undoes")
    if not modules:
        raise ProtocolViolation("a command names at least one module")
    return command


def parse_reply(raw: object) -> Reply:
    """
    Decode and check one member's answer.

    Raises:
        ProtocolViolation: anything that does not fit; the operator ignores the answer.
    """
    body = _load(raw)
    phase = _choice(body, "phase", REPLY_PHASES)
    member = body.get("member")
    if not is_member_name(member):
        raise ProtocolViolation("bad member id")
    ok = body.get("ok")
    error = body.get("error")
    if not isinstance(ok, bool) or not (error is None or isinstance(error, str)):
        raise ProtocolViolation("bad ok or error")
    versions = body.get("versions", {})
    if not isinstance(versions, dict) or not all(
        is_module_name(name) and type(number) is int for name, number in versions.items()
    ):
        raise ProtocolViolation("bad versions")
    return Reply(
        id=body["id"],
        phase=phase,
        member=member,  # type: ignore[arg-type]
        ok=ok,
        error=None if error is None else error[:2000],
        sha256=_hashes(body.get("sha256", {}), "sha256", nullable=True),
        versions=versions,
    )
