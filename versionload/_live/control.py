"""
The control channel of ``versionload run``: a Unix socket that only the same user may use.

Why a socket (and not a signal and a file): a request needs an answer (the history,
or why a rollback was refused), and a socket carries both ways, at once, with the
caller's identity attached by the kernel. It lives in a per-user runtime directory:
``$VERSIONLOAD_RUNTIME_DIR`` if set, else ``$XDG_RUNTIME_DIR/versionload`` (a
directory only the user can enter, cleaned at logout), else
``<tempdir>/versionload-<uid>``. The directory must be owned by the user and closed
to everybody else (mode 0700, not a symlink), and the socket itself is created with
mode 0600, so other users cannot even connect; on Linux each connection's peer
credentials (``SO_PEERCRED``) are checked as well, and a peer with another uid is
refused with an error answer. The socket is named ``<pid>.sock``, so a client finds
the program by its process id, or takes the only one running.

The protocol is one JSON object per line each way: a request ``{"op": ...}`` and its
answer ``{"ok": true, ...}`` or ``{"ok": false, "error": ..., "kind": ...}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from .. import _arguments as check
from .._errors import (
    ControlError,
    InvalidArgumentError,
    ModuleNotLoadedError,
    NotTrackedError,
    VersionLoadError,
    VersionNotFoundError,
)
from .._tracker import Tracker

RUNTIME_DIR_ENV = "VERSIONLOAD_RUNTIME_DIR"
SOCKET_ENV = "VERSIONLOAD_SOCKET"
_MAX_REQUEST = 64 * 1024
_TIMEOUT = 5.0
#: Clients served at once; one more is told the program is busy. Each has its own
#: thread and at most _TIMEOUT seconds to send its request, so an idle or slow client
#: delays nobody else.
_MAX_CLIENTS = 8


def _configured_dir() -> Path:
    override = os.environ.get(RUNTIME_DIR_ENV)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if override:
        return Path(override)
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "versionload"
    return Path(tempfile.gettempdir()) / f"versionload-{os.getuid()}"


def _distrust(directory: Path) -> str | None:
    """
    Why ``directory`` must not hold our sockets (None: it is ours and private, or absent).
    """
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return f"{directory} is not a directory (a symlink or file there is not trusted)"
    if info.st_uid != os.getuid():
        return f"{directory} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    if info.st_mode & 0o077:
        return f"{directory} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); use 0700"
    return None


def runtime_dir(*, create: bool) -> Path:
    """
    The per-user directory holding the control sockets, checked to be private.

    Raises:
        ControlError: it exists but belongs to someone else or is open to others.
    """
    directory = _configured_dir()
    if create:
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700, parents=True)
    reason = _distrust(directory)
    if reason is not None:
        raise ControlError(reason)
    return directory


_FALLBACK_PREFIX = "versionload-{uid}-"


def server_dir() -> tuple[Path, str | None]:
    """
    Where a new control socket goes, and why the runtime directory was refused (or None).

    Anyone can create ``<tmpdir>/versionload-<uid>`` before us (as a symlink, or as a
    directory of their own); that must not stop the program, nor hand its socket to
    them: a refused runtime directory is replaced by a fresh private one, made by
    `tempfile.mkdtemp` (mode 0700, a name nobody can guess in advance), which clients
    find by its prefix and check the same way.
    """
    try:
        return runtime_dir(create=True), None
    except OSError as error:  # ControlError too: an untrusted directory
        prefix = _FALLBACK_PREFIX.format(uid=os.getuid())
        return Path(tempfile.mkdtemp(prefix=prefix)), str(error)


def _socket_dirs() -> tuple[list[Path], list[str]]:
    """
    The trusted directories that may hold sockets, and why others were passed over.
    """
    directories: list[Path] = []
    refused: list[str] = []
    configured = _configured_dir()
    reason = _distrust(configured)
    if reason is None:
        directories.append(configured)
    else:
        refused.append(reason)
    pattern = _FALLBACK_PREFIX.format(uid=os.getuid()) + "*"
    for candidate in sorted(Path(tempfile.gettempdir()).glob(pattern)):
        # Another user can make directories with this name too: only ours count.
        if candidate != configured and _distrust(candidate) is None:
            directories.append(candidate)
    return directories, refused


def _distrust_chosen(directory: Path) -> str | None:
    """
    Why a directory the user named (``--socket``) must not be used: others can replace
    what is in it. Unlike a runtime directory it may be readable by others.
    """
    try:
        info = os.stat(directory)
    except OSError as error:
        return f"{directory}: {error.strerror}"
    if info.st_uid not in (os.getuid(), 0):
        return f"{directory} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        return f"{directory} is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _check_socket(path: Path, *, chosen: bool = False) -> Path:
    """
    ``path`` if it is a socket of ours in a directory others cannot tamper with: a
    private one, or for a path the user named, one only its owner (or root) can write.

    Raises:
        ControlError: it is in a directory others can reach, or is not our socket.
    """
    reason = _distrust_chosen(path.parent) if chosen else _distrust(path.parent)
    if reason is not None:
        raise ControlError(f"not using the socket {path}: {reason}")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise ControlError(f"no socket {path}") from None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        raise ControlError(f"not using {path}: not a socket of yours")
    return path


def socket_path(pid: int) -> Path:
    """
    Where the socket of process ``pid`` is (or would be, in the runtime directory).
    """
    directories, _ = _socket_dirs()
    for directory in directories:
        candidate = directory / f"{pid}.sock"
        if os.path.lexists(candidate):
            return candidate
    return _configured_dir() / f"{pid}.sock"


#: Longest path AF_UNIX takes (sun_path holds it with its final NUL byte).
_MAX_SOCKET_PATH = (108 if sys.platform.startswith("linux") else 104) - 1


def peer_credentials(conn: socket.socket) -> tuple[int, int, int] | None:
    """
    ``(pid, uid, gid)`` of the process at the other end of a Unix socket, where the
    platform tells (Linux ``SO_PEERCRED``); None elsewhere.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    size = struct.calcsize("3i")
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, size))
    return pid, uid, gid


def check_peer(conn: socket.socket, uid: int | None = None) -> str | None:
    """
    Why the peer must be refused (another user), or None if it may talk to us.
    """
    expected = os.getuid() if uid is None else uid
    credentials = peer_credentials(conn)
    if credentials is None:
        return None  # the socket's 0600 mode is the check on this platform
    pid, peer_uid, _ = credentials
    if peer_uid != expected:
        return f"refused: process {pid} runs as uid {peer_uid}, this program as uid {expected}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ControlServer:
    """
    Answers history and rollback requests for one tracker on a private Unix socket.
    """

    def __init__(self, tracker: Tracker, roots: tuple[str, ...], path: Path | None = None) -> None:
        self.tracker = tracker
        self.roots = roots
        self._resolved_roots = tuple(check.resolve(root) for root in roots)
        self.path = path
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(_MAX_CLIENTS)
        #: The process that created the socket file: only it may remove it. A worker
        #: forked from the program (multiprocessing, pre-fork servers) inherits this
        #: object and may run the same clean-up on its way out.
        self._creator: int | None = None
        #: Why the runtime directory was not used (None: it was); see `server_dir`.
        self.refused: str | None = None
        self._made_dir: Path | None = None  # the private directory made instead
        self._logger = structlog.get_logger("versionload")

    def start(self) -> ControlServer:
        """
        Open the socket and answer requests in a daemon thread.

        Without a path, the socket goes in the runtime directory, or, if that cannot be
        trusted, in a fresh private directory (`refused` then says why).

        Raises:
            ControlError: the socket path is too long for ``AF_UNIX``.
            OSError: the socket cannot be created.
        """
        if self.path is None:
            directory, self.refused = server_dir()
            if self.refused is not None:
                self._made_dir = directory
            self.path = directory / f"{os.getpid()}.sock"
        length = len(os.fsencode(self.path))
        if length > _MAX_SOCKET_PATH:
            self._remove_dir()
            raise ControlError(
                f"the socket path {str(self.path)!r} is {length} bytes, longer than AF_UNIX "
                f"allows ({_MAX_SOCKET_PATH}); set {RUNTIME_DIR_ENV} to a shorter directory"
            )
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by an earlier process with the same pid
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The umask makes the socket 0600 from the moment it exists: no window in
        # which another user could connect before a chmod.
        old_umask = os.umask(0o177)
        try:
            server.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._creator = os.getpid()
        server.listen(8)
        server.settimeout(0.2)
        self._socket = server
        self._thread = threading.Thread(target=self._serve, name="versionload-control", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._socket is not None:
            self._socket.close()
        if self.path is not None and self._creator == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._remove_dir()

    def _remove_dir(self) -> None:
        if self._made_dir is not None:
            with contextlib.suppress(OSError):
                self._made_dir.rmdir()

    def _serve(self) -> None:
        assert self._socket is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                with conn, contextlib.suppress(OSError, ValueError):
                    conn.settimeout(0.5)
                    _send(conn, {"ok": False, "kind": "busy", "error": "busy: too many clients at once"})
                    # As for a refusal: read what the client sent (briefly), so that
                    # closing does not reset the connection before it reads the answer.
                    conn.shutdown(socket.SHUT_WR)
                    _receive(conn, deadline=time.monotonic() + 0.2)
                continue
            try:
                threading.Thread(
                    target=self._client, args=(conn,), name="versionload-control-client", daemon=True
                ).start()
            except RuntimeError:  # no thread to be had (interpreter exiting)
                self._slots.release()
                conn.close()

    def _client(self, conn: socket.socket) -> None:
        try:
            # A client that went away needs no answer.
            with conn, contextlib.suppress(OSError):
                self._answer(conn)
        except Exception as error:  # noqa: BLE001 - one bad request must not end the server
            self._logger.error("control.request_failed", error=repr(error))
        finally:
            self._slots.release()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(_TIMEOUT)
        refusal = check_peer(conn)
        if refusal is not None:
            credentials = peer_credentials(conn)
            self._logger.warning(
                "control.refused",
                peer_pid=credentials[0] if credentials else None,
                peer_uid=credentials[1] if credentials else None,
            )
            _send(conn, {"ok": False, "kind": "refused", "error": refusal})
            # Closing with the request unread would reset the connection, and the
            # client could lose the answer: read (a little, briefly) what it sent.
            conn.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError, ValueError):
                _receive(conn, deadline=time.monotonic() + 0.5)
            return
        try:
            request = json.loads(_receive(conn, deadline=time.monotonic() + _TIMEOUT))
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
        except RecursionError:
            # Deeply nested JSON ("[[[[..."): the parser gives up, and so do we.
            _send(conn, {"ok": False, "kind": "bad_request", "error": "bad request: nested too deeply"})
            return
        except ValueError as error:  # also a request that is not UTF-8
            _send(conn, {"ok": False, "kind": "bad_request", "error": f"bad request: {error}"})
            return
        try:
            answer = self.handle(request)
        except Exception as error:  # noqa: BLE001 - answered, and the server goes on
            answer = {"ok": False, "kind": "failed", "error": f"the request failed: {error!r}"}
        _send(conn, answer)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """
        The answer to one request (``ping``, ``history``, ``rollback`` or ``reload``).
        """
        op = request.get("op")
        try:
            if op == "ping":
                return {"ok": True, "pid": os.getpid(), "roots": list(self.roots)}
            if op == "history":
                return {"ok": True, "pid": os.getpid(), "modules": self._history(request)}
            if op == "rollback":
                return self._rollback(request)
            if op == "reload":
                return self._reload(request)
        except InvalidArgumentError as error:
            return {"ok": False, "kind": "bad_request", "error": str(error)}
        except ModuleNotLoadedError as error:
            return {"ok": False, "kind": "not_found", "error": str(error)}
        except NotTrackedError as error:
            # The library's advice (import it with the hook, or track() it) means nothing
            # to someone at the command line: say where to find the names that exist.
            message = (
                f"module {error.module!r} is not tracked by process {os.getpid()} "
                "(`versionload history --all` lists the modules it tracks)"
            )
            return {"ok": False, "kind": "not_found", "error": message}
        except VersionNotFoundError as error:
            return {"ok": False, "kind": "not_found", "error": str(error)}
        except VersionLoadError as error:
            return {"ok": False, "kind": "failed", "error": str(error)}
        return {"ok": False, "kind": "bad_request", "error": f"unknown op {op!r}"}

    def _under_roots(self, origin: str | None) -> bool:
        return origin is not None and check.is_under(origin, self._resolved_roots)

    def _history(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        module = request.get("module")
        if module is not None and not isinstance(module, str):
            raise InvalidArgumentError(f"module must be a name, got {module!r}")
        names = [module] if module is not None else list(self.tracker.tracked())
        result = []
        for name in names:
            found = self.tracker.lookup(name)
            if found is None:
                if module is not None:
                    raise NotTrackedError(name)
                continue
            if module is None and not request.get("all") and not self._under_roots(found.current.origin):
                continue
            result.append(
                {
                    "module": name,
                    "current": found.current.number,
                    "versions": [
                        {
                            "number": v.number,
                            "reason": v.reason,
                            "created_at": v.created_at.isoformat(),
                            "origin": v.origin,
                            "source_sha256": v.source_sha256,
                        }
                        for v in found.versions
                    ],
                }
            )
        return result

    def _rollback(self, request: dict[str, Any]) -> dict[str, Any]:
        name, to = request.get("module"), request.get("to")
        if not isinstance(name, str):
            return {"ok": False, "kind": "bad_request", "error": "rollback needs a module name"}
        found = self.tracker.lookup(name)
        if found is None:
            raise NotTrackedError(name)
        module = found.module
        previous = found.current.number
        self.tracker.rollback(module, to)
        return {
            "ok": True,
            "module": name,
            "version": self.tracker.current(module).number,
            "previous": previous,
        }

    def _reload(self, request: dict[str, Any]) -> dict[str, Any]:
        """
        Reload a tracked module (``cascade``: false, true, or a list of patterns), or
        with ``dry_run`` only say which modules that would reload, in order.
        """
        name = request.get("module")
        if not isinstance(name, str) or not name:
            return {"ok": False, "kind": "bad_request", "error": "reload needs a module name"}
        cascade = request.get("cascade", False)
        # JSON has no tuples: patterns come as a list, and nothing else is accepted.
        if not isinstance(cascade, (bool, list)):
            raise InvalidArgumentError(f"cascade must be true, false or a list of patterns, got {cascade!r}")
        reach = check.cascade(cascade)
        dry_run = check.flag(request.get("dry_run", False), "dry_run")
        # Only a module the program tracks, as for rollback: the channel is not a way
        # to re-run arbitrary library code. Its untracked dependents are adopted.
        if self.tracker.lookup(name) is None:
            raise NotTrackedError(name)
        plan = self.tracker.plan(name, cascade=cascade)
        answer: dict[str, Any] = {
            "ok": True,
            "module": plan.trigger,
            "dry_run": dry_run,
            "modules": list(plan.modules),
            "adopted": list(plan.adopted),
        }
        if dry_run:
            return answer
        self.tracker.reload(plan.trigger, cascade=False if reach is False else cascade)
        # What was applied, read back: the plan may have been outdated by a change
        # between the two calls, and the versions say what is current now.
        answer["versions"] = {
            each: found.current.number
            for each in plan.modules
            if (found := self.tracker.lookup(each)) is not None
        }
        return answer


def _send(conn: socket.socket, payload: dict[str, Any]) -> None:
    conn.sendall(json.dumps(payload).encode() + b"\n")


def _receive(conn: socket.socket, deadline: float | None = None) -> bytes:
    """
    One line (or what came before the peer closed), at most ``_MAX_REQUEST`` bytes,
    by ``deadline`` (a `time.monotonic` value) if given.

    Raises:
        ValueError: the line is too long.
        TimeoutError: the deadline passed first.
    """
    data = b""
    while not data.endswith(b"\n"):
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request took too long")
            conn.settimeout(remaining)
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > _MAX_REQUEST:
            raise ValueError("request too long")
    return data


# -- the client side ------------------------------------------------------------------


def find_socket(pid: int | None = None, path: str | None = None) -> Path:
    """
    The socket of the program to talk to: the given path, the given pid's, the one in
    ``$VERSIONLOAD_SOCKET``, or the only running one.

    Sockets are looked for in the runtime directory and in the private directories a
    program makes when that one cannot be trusted; a socket in a directory other users
    can reach (or own) is never used.

    Raises:
        ControlError: none (or more than one) is running, or the directory is unsafe.
    """
    if path is not None:
        return _check_socket(Path(path).absolute(), chosen=True)
    if pid is not None:
        candidate = socket_path(pid)
        if not os.path.lexists(candidate):
            _, refused = _socket_dirs()
            why = f"; passed over: {'; '.join(refused)}" if refused else ""
            raise ControlError(f"no versionload program with pid {pid} (no socket {candidate}){why}")
        return _check_socket(candidate)
    if os.environ.get(SOCKET_ENV):
        return _check_socket(Path(os.environ[SOCKET_ENV]))
    directories, refused = _socket_dirs()
    running = []
    for directory in directories:
        for candidate in sorted(directory.glob("*.sock")) if directory.is_dir() else []:
            if not candidate.stem.isdigit():
                continue
            if _pid_alive(int(candidate.stem)):
                running.append(candidate)
            else:
                # Left by a program that was killed outright; the directory is ours.
                with contextlib.suppress(OSError):
                    candidate.unlink()
    if not running:
        where = ", ".join(str(d) for d in directories) or str(_configured_dir())
        why = f"; passed over: {'; '.join(refused)}" if refused else ""
        raise ControlError(f"no running `versionload run` program found (no socket in {where}){why}")
    if len(running) > 1:
        pids = ", ".join(c.stem for c in running)
        raise ControlError(f"several versionload programs are running (pids {pids}); choose one with --pid")
    return _check_socket(running[0])


def request(path: Path, payload: dict[str, Any], timeout: float = _TIMEOUT) -> dict[str, Any]:
    """
    Send one request and return the answer.

    Raises:
        ControlError: the socket cannot be reached, or the answer is not JSON.
    """
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        with client:
            client.connect(str(path))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                _send(client, payload)  # a refusal can come before the request was read
            answer = json.loads(_receive(client) or b"null")
    except PermissionError as error:
        raise ControlError(f"not allowed to connect to {path}: {error.strerror}") from None
    except (OSError, ValueError) as error:
        raise ControlError(f"cannot talk to the program at {path}: {error}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"the program at {path} gave no answer")
    return answer
