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
import tempfile
import threading
from pathlib import Path
from typing import Any

import structlog

from .. import _arguments as check
from .._errors import (
    ControlError,
    InvalidArgumentError,
    NotTrackedError,
    VersionLoadError,
    VersionNotFoundError,
)
from .._tracker import Tracker

RUNTIME_DIR_ENV = "VERSIONLOAD_RUNTIME_DIR"
SOCKET_ENV = "VERSIONLOAD_SOCKET"
_MAX_REQUEST = 64 * 1024
_TIMEOUT = 5.0


def runtime_dir(*, create: bool) -> Path:
    """
    The per-user directory holding the control sockets, checked to be private.

    Raises:
        ControlError: it exists but belongs to someone else or is open to others.
    """
    override = os.environ.get(RUNTIME_DIR_ENV)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if override:
        directory = Path(override)
    elif xdg and os.path.isabs(xdg):
        directory = Path(xdg) / "versionload"
    else:
        directory = Path(tempfile.gettempdir()) / f"versionload-{os.getuid()}"
    if create:
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700, parents=True)
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return directory
    if not stat.S_ISDIR(info.st_mode):
        raise ControlError(f"{directory} is not a directory (a symlink or file there is not trusted)")
    if info.st_uid != os.getuid():
        raise ControlError(f"{directory} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})")
    if info.st_mode & 0o077:
        raise ControlError(
            f"{directory} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); use 0700"
        )
    return directory


def socket_path(pid: int) -> Path:
    return runtime_dir(create=False) / f"{pid}.sock"


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
        self._logger = structlog.get_logger("versionload")

    def start(self) -> ControlServer:
        if self.path is None:
            self.path = runtime_dir(create=True) / f"{os.getpid()}.sock"
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
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _serve(self) -> None:
        assert self._socket is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            # A client that went away needs no answer.
            with conn, contextlib.suppress(OSError):
                self._answer(conn)

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
            conn.settimeout(0.5)
            with contextlib.suppress(OSError, ValueError):
                _receive(conn)
            return
        try:
            request = json.loads(_receive(conn))
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as error:
            _send(conn, {"ok": False, "kind": "bad_request", "error": f"bad request: {error}"})
            return
        _send(conn, self.handle(request))

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """
        The answer to one request (``ping``, ``history`` or ``rollback``).
        """
        op = request.get("op")
        try:
            if op == "ping":
                return {"ok": True, "pid": os.getpid(), "roots": list(self.roots)}
            if op == "history":
                return {"ok": True, "pid": os.getpid(), "modules": self._history(request)}
            if op == "rollback":
                return self._rollback(request)
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


def _send(conn: socket.socket, payload: dict[str, Any]) -> None:
    conn.sendall(json.dumps(payload).encode() + b"\n")


def _receive(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
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

    Raises:
        ControlError: none (or more than one) is running, or the directory is unsafe.
    """
    if path is not None:
        return Path(path)
    if pid is not None:
        candidate = socket_path(pid)
        if not candidate.exists():
            raise ControlError(f"no versionload program with pid {pid} (no socket {candidate})")
        return candidate
    if os.environ.get(SOCKET_ENV):
        return Path(os.environ[SOCKET_ENV])
    directory = runtime_dir(create=False)
    running = []
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
        raise ControlError(f"no running `versionload run` program found (no socket in {directory})")
    if len(running) > 1:
        pids = ", ".join(c.stem for c in running)
        raise ControlError(f"several versionload programs are running (pids {pids}); choose one with --pid")
    return running[0]


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
