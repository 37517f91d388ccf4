"""
The ``versionload`` command: run a program with live reloading, and drive it.

    versionload run [--watch DIR ...] [--cascade[=PATTERN]] [--in-place] [--prune] [--json]
                    [--log-file PATH] [--fleet URL --group G] (-m MODULE | SCRIPT) [ARGS...]

SCRIPT is what python accepts: a Python file, or a directory or zip file with a
``__main__.py``.
    versionload history [--pid PID] [--socket PATH] [--all] [--json] [MODULE]
    versionload rollback [--pid PID] [--socket PATH] MODULE [N]
    versionload reload [--pid PID] [--socket PATH] [--cascade [PATTERN ...]] [--dry-run] MODULE
    versionload changes [--pid PID] [--socket PATH] [--json]
    versionload undo [--pid PID] [--socket PATH] [ID]
    versionload fleet status|reload|rollback|undo --redis URL --group G ...   (see docs/fleet.md)

Exit codes: 0 success; 1 the program raised; 2 bad usage (a bad flag, no target);
3 the script or module to run does not exist; 4 no running program could be reached
(or it refused us); 5 the program refused the request (unknown module, version or
changeset, or the rollback, reload or undo failed); 130 interrupted, 143 terminated. A
program that exits with a status keeps its status.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import logging
import os
import runpy
import signal
import sys
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, NoReturn, cast

import structlog

from .. import _arguments as check
from .._events import LoadFilter, filter_load_logs
from .._fleet import cli as _fleet_cli

EXIT_OK = 0
EXIT_PROGRAM_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4
EXIT_REFUSED = 5

_RUN_VALUE_OPTIONS = {"--watch", "-w", "--log-file", *_fleet_cli.RUN_VALUE_OPTIONS}
_RUN_USAGE = (
    "versionload run [--watch DIR ...] [--cascade[=PATTERN]] [--in-place] [--prune] [--json] "
    "[--log-file PATH] [--fleet URL --group G] (-m MODULE | SCRIPT) [ARGS...]"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        options, unknown = super().parse_known_args(args, namespace)
        # The deepest (sub)command parses first: an argument nobody knows is reported
        # with its usage (argparse would blame the top-level parser and show its own).
        if getattr(options, "own_parser", None) is None:
            options.own_parser = self
        return options, unknown


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("versionload")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _parser() -> _Parser:
    parser = _Parser(
        prog="versionload", description="Live, versioned module reloading for a running program."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="run a program with live reloading",
        usage=_RUN_USAGE,
        description="Run SCRIPT (a file, or a directory or zip file with __main__.py; or -m MODULE) "
        "with ARGS as python would, reloading its modules "
        "when their files under a watched directory change.",
    )
    run.add_argument(
        "--watch",
        "-w",
        action="append",
        default=[],
        metavar="DIR",
        help="reload modules whose file is under DIR (repeatable; default: the script's directory, "
        "or the current directory with -m)",
    )
    run.add_argument(
        "--cascade",
        nargs="?",
        const="",
        action="append",
        metavar="PATTERN",
        help="also reload the modules that depend on a changed one (within its package and the "
        "program's own code); --cascade=PATTERN (repeatable) names the dependents that may be reloaded",
    )
    run.add_argument("--in-place", action="store_true", help="update functions and classes in place")
    run.add_argument(
        "--prune",
        action="store_true",
        help="drop the names a module's new code no longer binds, as a fresh import would",
    )
    run.add_argument("--json", action="store_true", help="print events as JSON lines")
    run.add_argument(
        "--log-file",
        metavar="PATH",
        help="append events to PATH as JSON lines instead of printing them on stderr",
    )
    _fleet_cli.add_run_options(run)

    history = commands.add_parser(
        "history", help="list the tracked modules of a running program and their versions"
    )
    history.add_argument("module", nargs="?", help="only this module")
    history.add_argument("--all", action="store_true", help="also modules outside the watched directories")
    history.add_argument("--json", action="store_true", help="print the answer as JSON")
    _target_options(history)

    rollback = commands.add_parser("rollback", help="roll a module of a running program back")
    rollback.add_argument("module", help="the module's name, as in sys.modules")
    rollback.add_argument(
        "version", nargs="?", type=int, help="the version (default: the one before the current)"
    )
    _target_options(rollback)

    reload = commands.add_parser(
        "reload",
        help="reload a module of a running program (with --dry-run: show what would reload)",
        description="Reload MODULE in the running program, as versionload.reload does.",
    )
    reload.add_argument("module", help="the module's name, as in sys.modules")
    reload.add_argument(
        "--cascade",
        nargs="*",
        metavar="PATTERN",
        help="also reload its dependents (within its package and the program's own code; or only "
        "those matching a PATTERN); put MODULE first or end the patterns with --dry-run or --",
    )
    reload.add_argument(
        "--dry-run", action="store_true", help="only print the modules a reload would run, in order"
    )
    _target_options(reload)

    changes = commands.add_parser("changes", help="list the changesets of a running program")
    changes.add_argument("--json", action="store_true", help="print the answer as JSON")
    _target_options(changes)

    undo = commands.add_parser("undo", help="undo a changeset of a running program")
    undo.add_argument(
        "changeset", nargs="?", type=int, help="the changeset's id (default: the latest not undone)"
    )
    _target_options(undo)
    _fleet_cli.add_fleet_commands(commands)
    return parser


def _target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid", type=int, help="the process id of the `versionload run` program")
    parser.add_argument(
        "--socket", help="the control socket's path (default: found from --pid or the only one)"
    )


def _split_run(argv: list[str]) -> tuple[list[str], str | None, str | None, list[str]]:
    """
    Split ``run``'s arguments into its own options, the target and the program's arguments.

    Everything after the script (or ``-m MODULE``) belongs to the program, as with ``python``.
    """
    options: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            script = argv[index + 1] if index + 1 < len(argv) else None
            return options, None, script, argv[index + 2 :]
        if token == "-m":
            module = argv[index + 1] if index + 1 < len(argv) else ""
            return options, module, None, argv[index + 2 :]
        if token.startswith("-m") and not token.startswith("--"):
            return options, token[2:], None, argv[index + 1 :]
        if token.startswith("-"):
            options.append(token)
            if token in _RUN_VALUE_OPTIONS and index + 1 < len(argv):
                options.append(argv[index + 1])
                index += 1
            index += 1
            continue
        return options, None, token, argv[index + 1 :]
    return options, None, None, []


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the ``versionload`` command line; returns the exit status.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        if arguments and arguments[0] == "run":
            own, module, script, rest = _split_run(arguments[1:])
            options, unknown = parser.parse_known_args(["run", *own])
            if unknown:
                # parse_args would blame the top-level parser and show its usage, not run's.
                print(f"usage: {_RUN_USAGE}", file=sys.stderr)
                return _fail(EXIT_USAGE, f"run: unrecognized arguments: {' '.join(unknown)}")
            if module == "" or (module is None and script is None):
                return _fail(EXIT_USAGE, "run: give a script to run, or -m MODULE")
            return _run(options, module, script, rest)
        options, unknown = parser.parse_known_args(arguments)
        if unknown:
            getattr(options, "own_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    try:
        if options.command == "fleet":
            return _fleet_cli.fleet_main(options)
        if options.command == "history":
            return _history(options)
        if options.command == "reload":
            return _reload(options)
        if options.command == "changes":
            return _changes(options)
        if options.command == "undo":
            return _undo(options)
        return _rollback(options)
    except BrokenPipeError:
        # The reader went away (`versionload history --all | head`): stop quietly, and
        # point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


# -- run --------------------------------------------------------------------------------


def _fail(code: int, message: str) -> int:
    print(f"versionload: error: {message}", file=sys.stderr)
    return code


class _LineWriter:
    """
    A structlog logger that writes each rendered event as one line in one ``os.write``.

    The program shares stderr (and may share the log file's directory) with us: a line
    written in one call is never cut by, nor fused with, what the program writes
    through its own buffered streams.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()

    def write(self, message: str) -> None:
        data = (message + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            while data:
                data = data[os.write(self.fd, data) :]

    msg = debug = info = warning = warn = error = critical = exception = fatal = log = write


def _under_roots(roots: tuple[str, ...]) -> tuple[Callable[[object], bool], LoadFilter]:
    """
    ``under(origin)``: whether a file lies under ``roots``, the verdict kept per
    directory, as the watcher keeps it: asked on every import, it costs a dictionary
    lookup for a file outside the roots instead of a ``realpath``. And the same rule
    as a load filter, ``loads(name, origin)``, in one frame for a file outside.
    """
    resolved = tuple(check.resolve(root) for root in roots)
    verdicts: dict[str, bool] = {}
    files: dict[str, bool] = {}
    fast = check.FAST_DIRECTORY_KEY
    sep = os.sep

    def under(origin: object) -> bool:
        if not isinstance(origin, str):
            return False
        key = check.directory_key(origin)
        inside = verdicts.get(key)
        if inside is None:
            inside = check.lies_under(check.resolve_directory_of(origin), resolved)
            if len(verdicts) < _DIRECTORY_VERDICTS_MAX:
                verdicts[key] = inside
        if not inside:
            return False
        # The file itself may be a symlink that leads out of the roots; a load asks
        # twice (before its event is built, and the log processor).
        verdict = files.get(origin)
        if verdict is None:
            verdict = check.lies_under(check.resolve_file(origin), resolved)
            if len(files) < _DIRECTORY_VERDICTS_MAX:
                files[origin] = verdict
        return verdict

    def loads(_: str, origin: str | None) -> bool:
        # Every import asks (see `filter_load_logs`): a file in a directory known to
        # lie outside is answered here, without the call to `under`.
        if isinstance(origin, str):
            # `check.directory_key`, written out: every import comes here.
            inside = verdicts.get(origin[: origin.rfind(sep) + 1] if fast else os.path.dirname(origin))
            if inside is False:
                return False
            verdict = files.get(origin) if inside else None
            if verdict is not None:
                return verdict
        return under(origin)

    return under, loads


#: How many directories' (and files') verdicts `_under_roots` keeps.
_DIRECTORY_VERDICTS_MAX = 10_000


def _configure_logging(json_lines: bool, roots: tuple[str, ...], log_file: str | None = None) -> None:
    under, loads = _under_roots(roots)

    def only_watched_loads(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        # Loads of the standard library and of installed packages would drown the
        # lines that matter: show debug events only for files under the watched roots.
        if event.get("level") == "debug" and not under(event.get("origin")):
            raise structlog.DropEvent
        return event

    if log_file is not None:
        json_lines = True
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    else:
        fd = sys.stderr.fileno()
        sys.stderr.flush()
    processors: list[Any]
    if json_lines:
        processors = [_json_lines(under)]
    else:
        processors = [
            structlog.processors.add_log_level,
            only_watched_loads,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=log_file is None and sys.stderr.isatty()),
        ]
    writer = _LineWriter(fd)
    # The same rule, asked before a load's event is built: an import from outside the
    # roots builds no event only for it to be dropped.
    filter_load_logs(loads)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=lambda *_: writer,
        cache_logger_on_first_use=False,
    )


def _json_lines(under: Callable[[object], bool]) -> Callable[[Any, str, MutableMapping[str, Any]], str]:
    """
    The JSON lines processor: what ``add_log_level``, dropping debug events of files
    outside the roots, ``TimeStamper(fmt="iso", utc=True)``, ``format_exc_info`` and
    ``JSONRenderer()`` do, in that order, in one step. Under ``--watch`` every load of
    a watched module writes a line: five processor calls, a new ``JSONEncoder`` per
    line and a ``datetime`` per timestamp were most of its cost.
    """
    format_exc_info = structlog.processors.format_exc_info
    # JSONRenderer() calls json.dumps(event, default=<structlog's fallback>), which
    # builds an encoder each time: this serializer keeps the one for that fallback.
    encoders: dict[Any, json.JSONEncoder] = {}

    def dumps(value: object, *, default: Any) -> str:
        encoder = encoders.get(default)
        if encoder is None:
            encoder = encoders[default] = json.JSONEncoder(default=default)
        return encoder.encode(value)

    render = structlog.processors.JSONRenderer(serializer=dumps)

    def json_line(logger: Any, method_name: str, event: MutableMapping[str, Any]) -> str:
        level = event["level"] = (
            "warning" if method_name == "warn" else "error" if method_name == "exception" else method_name
        )
        if level == "debug" and not under(event.get("origin")):
            raise structlog.DropEvent
        event["timestamp"] = utc_timestamp()
        if "exc_info" in event:
            # format_exc_info does nothing to an event without the key.
            event = format_exc_info(logger, method_name, event)
        return cast(str, render(logger, method_name, event))

    return json_line


#: The last whole second `utc_timestamp` formatted and its text, in one tuple: a
#: thread reads both of one second.
_LAST_SECOND: list[tuple[int, str]] = [(-1, "")]


def utc_timestamp(now_ns: int | None = None) -> str:
    """
    Now (or ``now_ns``) as ``TimeStamper(fmt="iso", utc=True)`` writes it:
    ``datetime.now(timezone.utc).isoformat()`` with ``Z`` for ``+00:00`` (no fraction
    when the microseconds are 0), the date and time formatted once per second.
    """
    # datetime.now() reads the same clock and floors to microseconds, as this does.
    seconds, micros = divmod((time.time_ns() if now_ns is None else now_ns) // 1000, 1_000_000)
    last = _LAST_SECOND[0]
    if last[0] != seconds:
        text = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).isoformat()
        last = _LAST_SECOND[0] = (seconds, text.removesuffix("+00:00"))
    return f"{last[1]}.{micros:06d}Z" if micros else f"{last[1]}Z"


def _terminated(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


def _run(options: argparse.Namespace, module: str | None, script: str | None, rest: list[str]) -> int:
    from .._errors import ControlError, InvalidArgumentError
    from .._tracker import default_tracker
    from .control import SOCKET_ENV, ControlServer
    from .watch import make_watcher

    # What python accepts as its target: a script, a directory or zip file holding a
    # ``__main__`` module (then runpy puts that path first on sys.path, as python
    # does), or -m MODULE (the current directory first on sys.path).
    archive = False
    if script is not None:
        script = os.path.abspath(script)
        if os.path.isdir(script) or (os.path.isfile(script) and zipfile.is_zipfile(script)):
            archive = True
            if not _has_main(script):
                return _fail(EXIT_NOT_FOUND, f"can't find '__main__' module in {script!r}")
            program_path = script
            watch_default = script if os.path.isdir(script) else os.path.dirname(script)
        elif not os.path.isfile(script):
            return _fail(EXIT_NOT_FOUND, f"can't open file {script!r}: no such file")
        else:
            program_path = watch_default = os.path.dirname(script)
    else:
        program_path = watch_default = os.getcwd()
    roots_given = options.watch or [watch_default]
    for root in roots_given:
        if not os.path.isdir(root):
            return _fail(EXIT_USAGE, f"--watch {root}: not a directory")
    # As python does: the script's directory (or the directory or zip file itself), or
    # the cwd for -m, replaces the entry that ran versionload.
    sys.path[0:1] = [program_path]
    # What versionload.install() does: the settings in force, the hook in place.
    tracker = default_tracker().install()
    if module is not None:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return _fail(EXIT_NOT_FOUND, f"no module named {module!r}")
    try:
        watcher = make_watcher(
            roots_given,
            cascade=_run_cascade(options.cascade),
            update="in-place" if options.in_place else None,
            tracker=tracker,
            debounce=0.01,
            force_polling=False,
            on_change=None,
            prune=options.prune,
        )
    except InvalidArgumentError as error:
        return _fail(EXIT_USAGE, str(error))
    try:
        _configure_logging(options.json, watcher.roots, options.log_file)
    except OSError as error:
        return _fail(EXIT_USAGE, f"--log-file {options.log_file}: {error.strerror or error}")
    logger = structlog.get_logger("versionload")
    control: ControlServer | None = None
    try:
        control = ControlServer(tracker, watcher.roots).start()
    except (ControlError, OSError) as error:
        # The program runs all the same: only `versionload history/rollback` cannot reach it.
        logger.warning("control.unavailable", reason=str(error))
    else:
        if control.refused is not None:
            logger.warning("control.runtime_dir_refused", reason=control.refused, socket=str(control.path))
        os.environ[SOCKET_ENV] = str(control.path)
    if threading.current_thread() is threading.main_thread():
        # Ended by `kill` or a service manager: leave through the same clean-up as
        # any other exit, so the socket file does not outlive the program.
        signal.signal(signal.SIGTERM, _terminated)
    member = _fleet_cli.join_for_run(options, tracker)
    if isinstance(member, int):
        if control is not None:
            control.stop()
        os.environ.pop(SOCKET_ENV, None)
        filter_load_logs(None)
        return member
    watcher.start()
    if control is not None:
        logger.info("control.listening", pid=os.getpid(), socket=str(control.path))
    try:
        if module is not None:
            sys.argv = [module, *rest]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            assert script is not None
            sys.argv = [script, *rest]
            if archive:
                # run_path puts the directory or zip file first on sys.path itself.
                del sys.path[0]
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exit:
        code = exit.code
        if code is None:
            return EXIT_OK
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return EXIT_PROGRAM_FAILED
    except KeyboardInterrupt:
        return 130
    except BaseException as error:  # noqa: BLE001 - shown as python shows it; the exit status says it failed
        _print_program_error(error)
        return EXIT_PROGRAM_FAILED
    finally:
        _fleet_cli.leave_after_run(member)
        watcher.stop()
        if control is not None:
            control.stop()
        os.environ.pop(SOCKET_ENV, None)
        filter_load_logs(None)  # run in-process (tests, fleet), the caller logs as before
    return EXIT_OK


def _has_main(path: str) -> bool:
    """
    Whether a directory or zip file holds a ``__main__`` module python can run.
    """
    import pkgutil

    finder = pkgutil.get_importer(path)
    return finder is not None and finder.find_spec("__main__") is not None


def _print_program_error(error: BaseException) -> None:
    """
    Print the program's traceback as ``python SCRIPT`` would: from the program's first frame.
    """
    ours = {os.path.abspath(__file__), os.path.abspath(runpy.__file__)}
    frames = error.__traceback__
    # Our frames and runpy's come first; a reader would take them for a versionload bug.
    while frames is not None:
        filename = frames.tb_frame.f_code.co_filename
        if filename != "<frozen runpy>" and os.path.abspath(filename) not in ours:
            break
        frames = frames.tb_next
    traceback.print_exception(type(error), error, frames)


# -- history and rollback ----------------------------------------------------------------


def _ask(options: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any] | int:
    from .._errors import ControlError
    from .control import find_socket, request

    try:
        path = find_socket(options.pid, options.socket)
        answer = request(path, payload)
    except ControlError as error:
        return _fail(EXIT_UNREACHABLE, str(error))
    if not answer.get("ok"):
        code = EXIT_UNREACHABLE if answer.get("kind") == "refused" else EXIT_REFUSED
        return _fail(code, str(answer.get("error")))
    return answer


def _history(options: argparse.Namespace) -> int:
    answer = _ask(options, {"op": "history", "module": options.module, "all": options.all})
    if isinstance(answer, int):
        return answer
    if options.json:
        print(json_dumps(answer["modules"]))
        return EXIT_OK
    if not answer["modules"]:
        print(f"no tracked modules under the watched directories of process {answer['pid']} (try --all)")
    for entry in answer["modules"]:
        print(f"{entry['module']}  (current: version {entry['current']})")
        for version in entry["versions"]:
            marker = "*" if version["number"] == entry["current"] else " "
            sha = (version["source_sha256"] or "")[:12] or "-"
            created = version["created_at"][11:19]
            print(f"  {marker} {version['number']:>3}  {version['reason']:<8} {created}  source {sha}")
    return EXIT_OK


def json_dumps(value: object) -> str:
    import json

    return json.dumps(value, indent=2)


def _run_cascade(given: list[str] | None) -> bool | list[str]:
    """
    ``run``'s ``--cascade`` options as the watcher's ``cascade``: patterns if any
    were given, else True for a bare ``--cascade``, else False.
    """
    if given is None:
        return False
    patterns = [pattern for pattern in given if pattern]
    return patterns or True


def _reload(options: argparse.Namespace) -> int:
    cascade: bool | list[str] = False if options.cascade is None else (options.cascade or True)
    answer = _ask(
        options, {"op": "reload", "module": options.module, "cascade": cascade, "dry_run": options.dry_run}
    )
    if isinstance(answer, int):
        return answer
    adopted = set(answer["adopted"])
    if options.dry_run:
        print(f"reloading {answer['module']} would run {len(answer['modules'])} module(s), in this order:")
    else:
        print(f"reloaded {answer['module']}: {len(answer['modules'])} module(s), in this order:")
    for name in answer["modules"]:
        note = "  (not tracked yet: adopted)" if name in adopted else ""
        version = "" if options.dry_run else f"  version {answer['versions'].get(name, '?')}"
        print(f"  {name}{version}{note}")
    return EXIT_OK


def _rollback(options: argparse.Namespace) -> int:
    answer = _ask(options, {"op": "rollback", "module": options.module, "to": options.version})
    if isinstance(answer, int):
        return answer
    print(f"rolled {answer['module']} back to version {answer['version']} (was {answer['previous']})")
    return EXIT_OK


def _changes(options: argparse.Namespace) -> int:
    answer = _ask(options, {"op": "changes"})
    if isinstance(answer, int):
        return answer
    if options.json:
        print(json_dumps(answer["changesets"]))
        return EXIT_OK
    if not answer["changesets"]:
        print(f"no changesets in process {answer['pid']}")
    for entry in answer["changesets"]:
        if entry["undone_by"] is not None:
            state = f"undone by {entry['undone_by']}"
        else:
            state = "undoable" if entry["undoable"] else "not undoable (versions pruned)"
        created = entry["created_at"][11:19]
        print(f"{entry['id']:>4}  {entry['kind']:<8} {created}  {entry['trigger']}  [{state}]")
        for change in entry["changes"]:
            print(f"        {change['module']}  {change['before']} -> {change['after']}")
    return EXIT_OK


def _undo(options: argparse.Namespace) -> int:
    answer = _ask(options, {"op": "undo", "changeset": options.changeset})
    if isinstance(answer, int):
        return answer
    changes = answer["changeset"]["changes"]
    moved = ", ".join(f"{c['module']} {c['before']} -> {c['after']}" for c in changes)
    print(f"undid changeset {answer['undone']} as changeset {answer['changeset']['id']}: {moved}")
    return EXIT_OK
