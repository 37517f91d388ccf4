"""
The fleet's part of the ``versionload`` command: ``versionload fleet ...`` and ``run --fleet``.

    versionload fleet status   --redis URL --group G [--json]
    versionload fleet reload   --redis URL --group G MODULE... [--expect-sha256 SHA]
                               [--cascade] [--prune] [--timeout S]
    versionload fleet rollback --redis URL --group G MODULE [--to-sha256 SHA] [--timeout S]
    versionload fleet undo     --redis URL --group G [--timeout S]
    versionload run --fleet URL --group G [--fleet-name NAME] ... SCRIPT

``--redis`` defaults to the environment variable ``VERSIONLOAD_FLEET_REDIS``, which keeps
a password out of the process list. The command module calls the three functions at
the bottom; nothing here imports the ``redis`` client until a fleet command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._tracker import Tracker
    from .member import Member
    from .operator import FleetResult, MemberInfo

URL_ENV = "VERSIONLOAD_FLEET_REDIS"

#: ``run`` options that take a value (the command line splits run's own options by them).
RUN_VALUE_OPTIONS = frozenset({"--fleet", "--group", "--fleet-name"})

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 4
EXIT_REFUSED = 5


def add_run_options(run: argparse.ArgumentParser) -> None:
    """
    ``run --fleet URL --group G``: the program joins the group as a member.
    """
    run.add_argument("--fleet", metavar="URL", help="join the fleet group at this Redis URL (needs --group)")
    run.add_argument("--group", metavar="G", help="the fleet group to join")
    run.add_argument(
        "--fleet-name", metavar="NAME", help="this member's name in the group (default host:pid)"
    )


def add_fleet_commands(commands: Any) -> None:
    """
    The ``fleet`` command and its subcommands.
    """
    fleet = commands.add_parser(
        "fleet",
        help="reload, roll back or undo on every process of a group, over Redis",
        description="Drive a fleet group: every member applies a command, or none does.",
    )
    # The metavar names the actions in "the following arguments are required" (else: fleet_command).
    actions = fleet.add_subparsers(
        dest="fleet_command", metavar="{status,reload,rollback,undo}", required=True, parser_class=type(fleet)
    )

    status = actions.add_parser("status", help="list the members and their modules")
    _group_options(status)
    status.add_argument("--json", action="store_true", help="print the members as JSON")

    reload = actions.add_parser("reload", help="reload modules on every member, all or none")
    _group_options(reload)
    reload.add_argument("modules", nargs="+", metavar="MODULE")
    reload.add_argument(
        "--expect-sha256",
        metavar="SHA",
        help="the sha256 every member must read (one module), or MODULE=SHA,... for several",
    )
    reload.add_argument("--cascade", action="store_true", help="also reload the modules that depend on them")
    reload.add_argument(
        "--prune",
        action="store_true",
        help="drop the names a module's new code no longer binds, as a fresh import would",
    )
    _command_options(reload)

    rollback = actions.add_parser("rollback", help="roll a module back on every member, all or none")
    _group_options(rollback)
    rollback.add_argument("module", metavar="MODULE")
    rollback.add_argument("--to-sha256", metavar="SHA", help="the version whose source has this sha256")
    _command_options(rollback)

    undo = actions.add_parser("undo", help="undo the group's last command on every member")
    _group_options(undo)
    _command_options(undo)


def _group_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get(URL_ENV),
        help=f"the Redis URL (default: ${URL_ENV})",
    )
    parser.add_argument("--group", required=True, metavar="G", help="the fleet group")


def _command_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds to wait (default 30)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _fail(code: int, message: str) -> int:
    print(f"versionload: error: {message}", file=sys.stderr)
    return code


def fleet_main(options: argparse.Namespace) -> int:
    """
    Run ``versionload fleet ...``; returns the exit status.
    """
    from .._errors import InvalidArgumentError
    from .errors import FleetConnectionError, FleetError, FleetUnavailableError
    from .operator import Fleet

    if not options.redis:
        return _fail(EXIT_USAGE, f"fleet: give --redis URL (or set {URL_ENV})")
    try:
        with Fleet(options.redis, group=options.group) as fleet:
            if options.fleet_command == "status":
                return _status(fleet, options.json)
            progress = None if options.json else _Progress()
            if options.fleet_command == "reload":
                result = fleet.reload(
                    options.modules,
                    expect_sha256=_expected(options.expect_sha256, options.modules),
                    cascade=options.cascade,
                    prune=options.prune,
                    timeout=options.timeout,
                    progress=progress,
                )
            elif options.fleet_command == "rollback":
                result = fleet.rollback(
                    options.module, to_sha256=options.to_sha256, timeout=options.timeout, progress=progress
                )
            else:
                result = fleet.undo(timeout=options.timeout, progress=progress)
            if progress is not None:
                progress.end()
            return _show_result(result, options.json)
    except InvalidArgumentError as error:
        return _fail(EXIT_USAGE, str(error))
    except (FleetConnectionError, FleetUnavailableError) as error:
        return _fail(EXIT_UNREACHABLE, str(error))
    except FleetError as error:
        return _fail(EXIT_REFUSED, str(error))


def _expected(value: str | None, modules: list[str]) -> str | dict[str, str] | None:
    if value is None or "=" not in value:
        return value
    from .._errors import InvalidArgumentError

    expected = {}
    for item in filter(None, value.split(",")):
        name, equals, digest = item.partition("=")
        if not equals:
            raise InvalidArgumentError(f"--expect-sha256: expected MODULE=SHA, got {item!r}")
        expected[name.strip()] = digest.strip()
    return expected


class _Progress:
    """
    One line on stderr, rewritten as members answer: ``prepare: 3/8 answered``.
    """

    def __init__(self) -> None:
        self._shown = False
        self._tty = sys.stderr.isatty()
        self._last = ""

    def __call__(self, phase: str, answered: int, expected: int) -> None:
        line = f"{phase}: {answered}/{expected} members answered"
        if line == self._last:
            return
        self._last = line
        if self._tty:
            print(f"\r{line}\033[K", end="", file=sys.stderr, flush=True)
        elif answered in (0, expected):
            print(line, file=sys.stderr, flush=True)
        self._shown = True

    def end(self) -> None:
        if self._shown and self._tty:
            print(file=sys.stderr)


def _status(fleet: Any, as_json: bool) -> int:
    members: tuple[MemberInfo, ...] = fleet.members()
    target: dict[str, str] = fleet.target()
    if as_json:
        import attrs

        print(json.dumps({"target": target, "members": [attrs.asdict(info) for info in members]}, indent=2))
        return EXIT_OK
    for name, digest in sorted(target.items()):
        print(f"target  {name}  {digest[:12]}")
    if not members:
        print(f"no live members in group {fleet.group!r}")
        return EXIT_OK
    rows = [("MEMBER", "MODULE", "VERSION", "SHA256", "HEARTBEAT", "")]
    for info in members:
        age = f"{info.heartbeat_age:.1f}s ago"
        if not info.modules:
            rows.append((info.member, "-", "-", "-", age, ""))
        for state in info.modules:
            note = ""
            if state.module in info.diverged:
                disk = info.diverged[state.module]
                note = f"diverged: disk has {(disk or '?')[:12]}"
            elif state.module in target and state.source_sha256 != target[state.module]:
                note = "not on target"
            rows.append(
                (info.member, state.module, str(state.version), (state.source_sha256 or "-")[:12], age, note)
            )
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[5])
    return EXIT_OK


def _show_result(result: FleetResult, as_json: bool) -> int:
    if as_json:
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "command": result.command,
                    "applied": list(result.applied),
                    "failed": dict(result.failed),
                    "stragglers": list(result.stragglers),
                    "rolled_back": list(result.rolled_back),
                },
                indent=2,
            )
        )
        return EXIT_OK if result.ok else EXIT_REFUSED
    if result.ok:
        print(f"applied on {len(result.applied)} members: {', '.join(result.applied)}")
        return EXIT_OK
    print("not applied: every member is as it was", file=sys.stderr)
    for member, error in sorted(result.failed.items()):
        print(f"  failed     {member}: {error}", file=sys.stderr)
    for member in result.stragglers:
        print(f"  no answer  {member}", file=sys.stderr)
    for member in result.rolled_back:
        print(f"  undone     {member}", file=sys.stderr)
    return EXIT_REFUSED


def join_for_run(options: argparse.Namespace, tracker: Tracker) -> Member | int | None:
    """
    For ``run --fleet URL --group G``: join the group, or the exit status of why not.
    """
    url, group = getattr(options, "fleet", None), getattr(options, "group", None)
    if url is None and group is None:
        return None
    if not url or not group:
        return _fail(EXIT_USAGE, "run: --fleet URL and --group G go together")
    from .._errors import InvalidArgumentError
    from .errors import FleetError
    from .member import join

    try:
        return join(url, group=group, name=options.fleet_name, tracker=tracker)
    except InvalidArgumentError as error:
        return _fail(EXIT_USAGE, str(error))
    except FleetError as error:
        return _fail(EXIT_UNREACHABLE, f"cannot join the fleet: {error}")


def leave_after_run(member: Member | None) -> None:
    if member is not None:
        member.leave()
