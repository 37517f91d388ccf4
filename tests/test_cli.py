"""
The ``versionload`` command, started as a real subprocess: live reloading of a running
program, its control channel, and its errors and exit codes.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

import versionload
from versionload._live import control as _control
from versionload._live.cli import EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE

from .helpers import wait_for

APP = """
import sys, time
import behaviour

for tick in range(int(sys.argv[1]) if len(sys.argv) > 1 else 10**6):
    print("tick", behaviour.answer(), flush=True)
    time.sleep(0.05)
"""

BEHAVIOUR = """
def answer():
    return "one"
"""


@pytest.fixture(name="runtime")
def _runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """
    A private runtime directory for control sockets (short, for the socket path limit).
    """
    directory = Path(tempfile.mkdtemp(prefix="vl-"))
    monkeypatch.setenv(_control.RUNTIME_DIR_ENV, str(directory))
    monkeypatch.delenv(_control.SOCKET_ENV, raising=False)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(name="app")
def _app(tmp_path: Path) -> Path:
    """
    A directory with a long-running script whose output comes from ``behaviour.py``.
    """
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "app.py").write_text(textwrap.dedent(APP))
    (directory / "behaviour.py").write_text(textwrap.dedent(BEHAVIOUR))
    return directory


def cli(*arguments: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "versionload", *arguments], capture_output=True, text=True, timeout=timeout
    )


class Program:
    """
    ``versionload run --json`` in a subprocess; its events and output lines gathered as they come.
    """

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "versionload", "run", "--json", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.output: list[str] = []
        self.other: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._threads = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.output.append), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self._event), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream: IO[str], sink: Callable[[str], None]) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    def _event(self, line: str) -> None:
        try:
            self.events.append(json.loads(line))
        except ValueError:
            self.other.append(line)

    def event(self, name: str, **fields: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for event in list(self.events):
                if event["event"] == name and all(event.get(k) == v for k, v in fields.items()):
                    return event
            return None

        assert wait_for(found, timeout=20), (name, fields, self.events, self.other)
        result = found()
        assert result is not None
        return result

    def prints(self, text: str, after: int = 0) -> int:
        """
        Wait for an output line containing ``text`` at index ``after`` or later; return its index.
        """

        def index() -> int | None:
            lines = list(self.output)
            return next((i for i in range(after, len(lines)) if text in lines[i]), None)

        assert wait_for(lambda: index() is not None, timeout=20), (text, self.output[-5:], self.other)
        found = index()
        assert found is not None
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(20)
        for thread in self._threads:
            thread.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code


@pytest.fixture(name="running")
def _running(app: Path, runtime: Path) -> Iterator[Program]:
    program = Program("--watch", str(app), str(app / "app.py"))
    program.event("control.listening")
    program.prints("tick one")
    yield program
    program.stop()


class TestRun:
    def test_edit_reload_failure_and_deletion(self, app, running):
        """A running program picks up an edit, survives a broken edit, and reports a deleted file."""
        loaded = running.event("module.loaded", module="behaviour")
        assert str(app / "behaviour.py") == loaded["origin"]

        (app / "behaviour.py").write_text("def answer():\n    return 'two'\n")
        reloaded = running.event("module.reloaded", module="behaviour")
        assert (2, ["answer"]) == (reloaded["version"], reloaded["changed"])
        line = running.prints("tick two")

        (app / "behaviour.py").write_text("def answer():\n    return 'three'\nraise ValueError('broken')\n")
        failed = running.event("module.reload_failed", module="behaviour")
        assert f"{app / 'behaviour.py'}:3" == failed["location"]
        assert "broken" in failed["error"]
        # A line printed after the failure was handled (the one after the next, in case
        # one was already on its way) still comes from the old code.
        later = len(running.output) + 1
        assert "tick two" == running.output[running.prints("tick", after=max(later, line + 1))]

        (app / "behaviour.py").unlink()
        running.event("watch.file_deleted", module="behaviour")
        assert running.process.poll() is None

    def test_prune_drops_names_the_new_source_no_longer_defines(self, app, runtime):
        """With --prune, a reload lists the dropped names as removed; without it they survive."""
        (app / "behaviour.py").write_text("OLD = 1\ndef answer():\n    return 'one'\n")
        program = Program("--prune", "--watch", str(app), str(app / "app.py"))
        try:
            program.prints("tick one")
            (app / "behaviour.py").write_text("def answer():\n    return 'two'\n")
            reloaded = program.event("module.reloaded", module="behaviour")
            program.prints("tick two")
        finally:
            program.stop()

        assert (["OLD"], ["answer"]) == (reloaded["removed"], reloaded["changed"])

    def test_run_module_with_arguments_and_exit_status(self, tmp_path, runtime, monkeypatch):
        """-m MODULE runs a module as __main__ with its arguments; its exit status is kept."""
        (tmp_path / "tool.py").write_text("import sys\nprint('args', sys.argv[1:])\nsys.exit(7)\n")
        monkeypatch.chdir(tmp_path)
        result = cli("run", "-m", "tool", "--flag", "x")
        assert 7 == result.returncode, result.stderr
        assert "args ['--flag', 'x']" in result.stdout

    @pytest.mark.parametrize("form", ["directory", "zip"])
    def test_run_directory_or_zip_with_main(self, tmp_path, runtime, form):
        """A directory or zip file with __main__.py runs as python runs it: argv[0] and sys.path[0] are it."""
        source = tmp_path / "prog"
        source.mkdir()
        (source / "helper.py").write_text("WORD = 'helped'\n")
        (source / "__main__.py").write_text(
            "import json, sys, helper\n"
            "print(json.dumps([sys.argv, sys.path[0], sys.path.count(sys.path[0]), helper.WORD]))\n"
        )
        target = source
        if form == "zip":
            target = Path(shutil.make_archive(str(tmp_path / "prog"), "zip", source))
        result = cli("run", str(target), "--flag", "x")
        expected = [[str(target), "--flag", "x"], str(target), 1, "helped"]

        assert 0 == result.returncode, result.stderr
        assert expected == json.loads(result.stdout.splitlines()[-1])
        assert expected == json.loads(
            subprocess.run(
                [sys.executable, str(target), "--flag", "x"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.splitlines()[-1]
        )

    def test_run_package_module(self, tmp_path, runtime, monkeypatch):
        """-m PACKAGE runs its __main__ submodule, with the current directory first on sys.path."""
        package = tmp_path / "tooling"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "__main__.py").write_text("import sys\nprint('main', sys.argv[1:], sys.path[0])\n")
        monkeypatch.chdir(tmp_path)
        result = cli("run", "-m", "tooling", "a")

        assert 0 == result.returncode, result.stderr
        assert f"main ['a'] {tmp_path}" == result.stdout.strip()

    def test_program_exception_is_exit_1(self, tmp_path, runtime):
        """A program that raises prints its traceback and exits with 1."""
        (tmp_path / "bad.py").write_text("raise RuntimeError('program bug')\n")
        result = cli("run", str(tmp_path / "bad.py"))
        assert 1 == result.returncode
        assert "RuntimeError: program bug" in result.stderr

    def test_program_traceback_starts_in_the_program(self, tmp_path, runtime):
        """The traceback of a program that raises shows the program's frames, not versionload's or runpy's."""
        (tmp_path / "helper.py").write_text("def fail():\n    raise RuntimeError('deep bug')\n")
        (tmp_path / "bad.py").write_text("import helper\nhelper.fail()\n")
        result = cli("run", str(tmp_path / "bad.py"))
        assert 1 == result.returncode
        traceback = result.stderr[result.stderr.index("Traceback") :]
        files = re.findall(r'File "([^"]+)"', traceback)
        assert [str(tmp_path / "bad.py"), str(tmp_path / "helper.py")] == files
        assert "RuntimeError: deep bug" in traceback

    def test_program_syntax_error(self, tmp_path, runtime):
        """A script that does not compile: python's SyntaxError report with file and line, exit 1."""
        (tmp_path / "broken.py").write_text("x = (\n")
        result = cli("run", str(tmp_path / "broken.py"))
        assert 1 == result.returncode
        assert f'File "{tmp_path / "broken.py"}", line 1' in result.stderr
        assert "SyntaxError" in result.stderr
        assert "runpy" not in result.stderr

    def test_console_output_without_json(self, tmp_path, runtime):
        """Without --json, events are rendered by structlog's console renderer (no colour on a pipe)."""
        (tmp_path / "quick.py").write_text("print('done')\n")
        result = cli("run", str(tmp_path / "quick.py"))
        assert 0 == result.returncode, result.stderr
        assert "watch.started" in result.stderr
        assert "\x1b[" not in result.stderr


class TestRunErrors:
    def test_missing_script(self, tmp_path, runtime):
        """A script that does not exist: a clear message and exit status 3."""
        result = cli("run", str(tmp_path / "nope.py"))
        assert EXIT_NOT_FOUND == result.returncode
        assert "nope.py" in result.stderr
        assert "no such file" in result.stderr

    def test_directory_without_main(self, tmp_path, runtime):
        """A directory with no __main__.py: a message naming it, and exit status 3."""
        result = cli("run", str(tmp_path))
        assert EXIT_NOT_FOUND == result.returncode
        assert "can't find '__main__' module" in result.stderr

    def test_unknown_module(self, tmp_path, runtime, monkeypatch):
        """-m with a module that does not exist: exit status 3."""
        monkeypatch.chdir(tmp_path)
        result = cli("run", "-m", "no_such_module_anywhere")
        assert EXIT_NOT_FOUND == result.returncode
        assert "no module named 'no_such_module_anywhere'" in result.stderr

    @pytest.mark.parametrize(
        "arguments",
        [["run", "--bogus", "x.py"], ["run"], ["run", "-m"], ["frobnicate"], [], ["rollback"]],
    )
    def test_bad_usage(self, arguments, runtime):
        """A bad flag, a missing target or an unknown command: exit status 2 and a usage message."""
        result = cli(*arguments)
        assert EXIT_USAGE == result.returncode
        assert "error" in result.stderr

    def test_unknown_run_flag_shows_runs_usage(self, runtime):
        """An unknown flag of run is reported with run's usage line, not the top-level one."""
        result = cli("run", "--bogus", "x.py")
        assert EXIT_USAGE == result.returncode
        assert result.stderr.startswith("usage: versionload run [--watch DIR ...]")
        assert "versionload: error: run: unrecognized arguments: --bogus" in result.stderr

    @pytest.mark.parametrize(
        ("arguments", "command"),
        [
            (["reload", "--bogus", "app"], "reload"),
            (["history", "--bogus"], "history"),
            (["fleet", "reload", "--group", "g", "--bogus", "app"], "fleet reload"),
            (["fleet", "status", "--group", "g", "--bogus"], "fleet status"),
        ],
    )
    def test_unknown_flag_shows_the_commands_usage(self, arguments, command, runtime):
        """An unknown flag of any command is reported with that command's usage, not the top-level one."""
        result = cli(*arguments)
        assert EXIT_USAGE == result.returncode
        assert result.stderr.startswith(f"usage: versionload {command} ")
        assert f"versionload {command}: error: unrecognized arguments: --bogus" in result.stderr

    @pytest.mark.parametrize("flag", ["--cascade", "--cascade=behav*", "--in-place"])
    def test_reload_mode_flags(self, app, runtime, flag):
        """--cascade, --cascade=PATTERN and --in-place run the program."""
        result = cli("run", flag, str(app / "app.py"), "1")

        assert (0, "tick one") == (result.returncode, result.stdout.strip()), result.stderr

    def test_watch_must_be_a_directory(self, app, runtime):
        """--watch with something that is not a directory: exit status 2."""
        result = cli("run", "--watch", str(app / "missing"), str(app / "app.py"), "1")
        assert EXIT_USAGE == result.returncode
        assert "not a directory" in result.stderr

    def test_console_script_is_installed(self):
        """The `versionload` console script exists and answers --help."""
        script = shutil.which("versionload", path=str(Path(sys.executable).parent))
        assert script is not None
        result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
        assert 0 == result.returncode
        assert "run" in result.stdout
        assert "rollback" in result.stdout

    def test_version_flag(self):
        """--version prints the installed distribution's version and exits 0."""
        result = cli("--version")

        assert 0 == result.returncode
        assert f"versionload {importlib.metadata.version('versionload')}" == result.stdout.strip()


class TestControl:
    def test_history_and_rollback(self, app, running):
        """history lists the versions of the running program; rollback restores one of them."""
        (app / "behaviour.py").write_text("def answer():\n    return 'two'\n")
        running.event("module.reloaded", module="behaviour")
        line = running.prints("tick two")
        pid = str(running.process.pid)

        result = cli("history", "--pid", pid, "--json")
        assert 0 == result.returncode, result.stderr
        [entry] = json.loads(result.stdout)
        assert ("behaviour", 2, [1, 2]) == (
            entry["module"],
            entry["current"],
            [v["number"] for v in entry["versions"]],
        )

        result = cli("rollback", "behaviour", "1")  # the only program running: found without --pid
        assert 0 == result.returncode, result.stderr
        assert "rolled behaviour back to version 1 (was 2)" in result.stdout
        running.event("module.rolled_back", module="behaviour", version=1, reason="control")
        running.prints("tick one", after=line)

        text = cli("history", "--pid", pid, "behaviour")
        assert 0 == text.returncode
        assert "current: version 1" in text.stdout

    def test_closed_output_pipe(self, running):
        """history into a pipe whose reader has gone (`| head`): exit 0 and no traceback."""
        reader, writer = os.pipe()
        os.close(reader)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "versionload", "history", "--all", "--pid", str(running.process.pid)],
                stdout=writer,
                stderr=subprocess.PIPE,
                text=True,
                timeout=30,
            )
        finally:
            os.close(writer)
        assert (0, "") == (result.returncode, result.stderr)

    def test_unknown_module_and_version(self, running):
        """Rolling back an untracked module or a missing version: exit status 5 and the reason."""
        pid = str(running.process.pid)
        unknown = cli("rollback", "--pid", pid, "no_such_module")
        assert EXIT_REFUSED == unknown.returncode
        assert f"module 'no_such_module' is not tracked by process {pid}" in unknown.stderr
        assert "versionload history --all" in unknown.stderr
        missing = cli("rollback", "--pid", pid, "behaviour", "9")
        assert EXIT_REFUSED == missing.returncode
        assert "no version 9" in missing.stderr
        history = cli("history", "--pid", pid, "no_such_module")
        assert EXIT_REFUSED == history.returncode

    def test_no_program_running(self, runtime):
        """With no program running, history says so and exits with status 4."""
        result = cli("history")
        assert EXIT_UNREACHABLE == result.returncode
        assert "no running" in result.stderr
        result = cli("rollback", "--pid", "999999", "x")
        assert EXIT_UNREACHABLE == result.returncode

    def test_socket_and_directory_are_private(self, running, runtime):
        """The socket is mode 0600 and its directory 0700, both owned by the user."""
        path = runtime / f"{running.process.pid}.sock"
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert (0o600, os.getuid()) == (stat.S_IMODE(info.st_mode), info.st_uid)
        assert 0o700 == stat.S_IMODE(os.stat(runtime).st_mode)

    def test_terminated_program_removes_its_socket(self, running, runtime):
        """SIGTERM ends the program through its clean-up: status 143, no socket left behind."""
        path = runtime / f"{running.process.pid}.sock"
        assert path.exists()
        assert 143 == running.stop()
        assert not path.exists()

    def test_forked_child_leaves_the_parents_socket(self, tmp_path, runtime):
        """A child forked by the program that leaves it normally does not remove the parent's socket."""
        script = tmp_path / "forker.py"
        script.write_text(
            "import os, time\n"
            "child = os.fork()\n"
            "if child:\n"
            "    os.waitpid(child, 0)\n"
            "    print('child reaped', flush=True)\n"
            "    for _ in range(1200):\n"
            "        time.sleep(0.05)\n"
        )
        program = Program(str(script))
        try:
            program.prints("child reaped")
            path = runtime / f"{program.process.pid}.sock"
            result = cli("history", "--pid", str(program.process.pid))

            assert 0 == result.returncode, result.stderr
            assert path.exists()
        finally:
            program.stop()

    def test_stale_socket_is_ignored_and_removed(self, runtime):
        """A socket left by a killed program is not taken for a running one, and is cleaned up."""
        stale = runtime / "999999.sock"
        stale.touch()
        result = cli("history")
        assert EXIT_UNREACHABLE == result.returncode
        assert "no running" in result.stderr
        assert not stale.exists()

    def test_malformed_requests_are_answered(self, tmp_path, runtime):
        """A request that is not a JSON object, or names no known op, gets an error answer."""
        server = _control.ControlServer(versionload.Tracker(), (str(tmp_path),)).start()
        try:
            assert server.path is not None
            for line in (b"not json\n", b"[1, 2]\n", b'{"op": "explode"}\n', b'{"op": "rollback"}\n'):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.settimeout(10)
                    client.connect(str(server.path))
                    client.sendall(line)
                    answer = json.loads(client.makefile().readline())
                assert (False, "bad_request") == (answer["ok"], answer["kind"]), line
            assert server.path.exists()
        finally:
            server.stop()
        assert not server.path.exists()

    def test_hostile_requests_leave_the_server_serving(self, tmp_path, runtime):
        """Hostile requests get an error answer or a close, and the server then answers history."""
        server = _control.ControlServer(versionload.Tracker(), (str(tmp_path),)).start()
        assert server.path is not None
        answered = [
            b"[" * 60_000 + b"\n",
            b"{" * 60_000 + b"\n",
            b"x" * (_control._MAX_REQUEST + 10),
            b"\xff\xfe\x00garbage\n",
            b'{"op": "history", "module": 5}\n',
            b'{"op": "history", "module": "missing"}\n',
            b'{"op": "rollback", "module": ["x"], "to": "one"}\n',
            b'{"op": ["not", "a", "name"]}\n',
            b"null\n",
        ]
        try:
            for line in answered:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.settimeout(10)
                    client.connect(str(server.path))
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        client.sendall(line)
                    answer = json.loads(client.makefile("rb").readline())
                assert False is answer["ok"], line[:20]
            for partial in (b"", b'{"op": "hist'):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.connect(str(server.path))
                    client.sendall(partial)
            answer = _control.request(server.path, {"op": "history", "all": True})

            assert (True, os.getpid()) == (answer["ok"], answer["pid"])
        finally:
            server.stop()

    def test_idle_client_does_not_hold_up_others(self, tmp_path, runtime):
        """A connected client that sends nothing does not stop another client from being answered."""
        server = _control.ControlServer(versionload.Tracker(), (str(tmp_path),)).start()
        assert server.path is not None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
                idle.connect(str(server.path))
                answer = _control.request(server.path, {"op": "ping"}, timeout=30)
                idle.setblocking(False)
                with pytest.raises(BlockingIOError):
                    idle.recv(1)  # still connected, still waiting: served alongside, not before

            assert (True, os.getpid()) == (answer["ok"], answer["pid"])
        finally:
            server.stop()

    def test_clients_beyond_the_bound_are_told_busy(self, tmp_path, runtime):
        """With every handler held by idle clients, one more is told busy; once they leave, all are served."""
        server = _control.ControlServer(versionload.Tracker(), (str(tmp_path),)).start()
        assert server.path is not None
        idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(_control._MAX_CLIENTS)]
        try:
            for client in idle:
                client.connect(str(server.path))
            busy = _control.request(server.path, {"op": "ping"}, timeout=30)
            for client in idle:
                client.close()
            answers: list[dict[str, Any]] = []
            assert wait_for(
                lambda: answers.append(_control.request(server.path, {"op": "ping"})) or answers[-1]["ok"],
                timeout=30,
            ), answers

            assert (False, "busy") == (busy["ok"], busy["kind"])
        finally:
            for client in idle:
                client.close()
            server.stop()

    def test_history_all_includes_modules_outside_the_roots(self, running):
        """history --all also lists tracked modules from outside the watched directories."""
        pid = str(running.process.pid)
        watched = json.loads(cli("history", "--pid", pid, "--json").stdout)
        everything = json.loads(cli("history", "--pid", pid, "--json", "--all").stdout)
        assert ["behaviour"] == [entry["module"] for entry in watched]
        assert len(everything) > len(watched)

    def test_unsafe_runtime_directory_is_refused(self, runtime):
        """A runtime directory open to other users is not trusted."""
        os.chmod(runtime, 0o777)
        with pytest.raises(_control.ControlError, match="open to other users"):
            _control.runtime_dir(create=True)


@pytest.fixture(name="tmpdir_env")
def _tmpdir_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """
    A private, short TMPDIR for the programs and clients started, with no runtime-directory override.
    """
    directory = Path(tempfile.mkdtemp(prefix="vlt-"))
    monkeypatch.delenv(_control.RUNTIME_DIR_ENV, raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv(_control.SOCKET_ENV, raising=False)
    monkeypatch.setenv("TMPDIR", str(directory))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


class TestRuntimeDirectory:
    @pytest.mark.parametrize("planted", ["symlink", "open directory"])
    def test_planted_runtime_directory_falls_back(self, app, tmpdir_env, tmp_path, planted):
        """A runtime directory planted first (symlink, mode 0755) is refused; the program runs, reachable."""
        runtime = tmpdir_env / f"versionload-{os.getuid()}"
        if planted == "symlink":
            target = tmp_path / "elsewhere"
            target.mkdir(mode=0o700)
            runtime.symlink_to(target)
        else:
            runtime.mkdir(mode=0o755)
            os.chmod(runtime, 0o755)
        program = Program("--watch", str(app), str(app / "app.py"))
        try:
            refused = program.event("control.runtime_dir_refused")
            listening = program.event("control.listening")
            program.prints("tick one")
            socket_dir = Path(listening["socket"]).parent
            by_pid = cli("history", "--pid", str(program.process.pid))
            only_one = cli("history")

            assert str(runtime) in refused["reason"]
            assert refused["socket"] == listening["socket"]
            assert (tmpdir_env, 0o700) == (socket_dir.parent, stat.S_IMODE(os.lstat(socket_dir).st_mode))
            assert (0, 0) == (by_pid.returncode, only_one.returncode), by_pid.stderr + only_one.stderr
            assert "behaviour" in by_pid.stdout
            if planted == "symlink":
                assert [] == list((tmp_path / "elsewhere").iterdir())  # nothing written through it
        finally:
            assert 143 == program.stop()
        assert not socket_dir.exists()

    def test_xdg_runtime_dir_is_used(self, app, tmpdir_env, tmp_path, monkeypatch):
        """With XDG_RUNTIME_DIR set, the socket is in its versionload directory."""
        xdg = Path(tempfile.mkdtemp(prefix="vlx-"))
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
        program = Program("--watch", str(app), str(app / "app.py"))
        try:
            listening = program.event("control.listening")
            program.prints("tick one")
            result = cli("history", "--pid", str(program.process.pid))

            assert str(xdg / "versionload" / f"{program.process.pid}.sock") == listening["socket"]
            assert 0 == result.returncode, result.stderr
        finally:
            program.stop()
            shutil.rmtree(xdg, ignore_errors=True)

    def test_socket_path_too_long_runs_without_control(self, tmp_path, tmpdir_env, monkeypatch):
        """A socket path too long for AF_UNIX: the program still runs, and a warning says why."""
        deep = tmpdir_env / ("d" * 60) / ("e" * 60)
        deep.mkdir(parents=True)
        monkeypatch.setenv("TMPDIR", str(deep))
        (tmp_path / "quick.py").write_text("print('ran anyway')\n")
        result = cli("run", "--json", str(tmp_path / "quick.py"))
        events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        warnings_seen = [e for e in events if e["event"] == "control.unavailable"]

        assert (0, "ran anyway") == (result.returncode, result.stdout.strip()), result.stderr
        assert 1 == len(warnings_seen)
        assert "AF_UNIX" in warnings_seen[0]["reason"]
        assert "warning" == warnings_seen[0]["level"]

    def test_client_refuses_sockets_in_open_directories(self, tmpdir_env):
        """The client finds no socket in a directory others can enter, nor uses one where others can write."""
        open_dir = tmpdir_env / f"versionload-{os.getuid()}-planted"
        open_dir.mkdir()
        os.chmod(open_dir, 0o755)
        writable = tmpdir_env / "shared"
        writable.mkdir()
        os.chmod(writable, 0o777)
        listeners = []
        try:
            for directory in (open_dir, writable):
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listeners.append(listener)
                listener.bind(str(directory / f"{os.getpid()}.sock"))
                listener.listen(1)
            found = cli("history")
            explicit = cli("history", "--socket", str(writable / f"{os.getpid()}.sock"))
        finally:
            for listener in listeners:
                listener.close()

        assert (EXIT_UNREACHABLE, EXIT_UNREACHABLE) == (found.returncode, explicit.returncode)
        assert "no running" in found.stderr
        assert "writable by other users" in explicit.stderr

    def test_socket_named_by_the_user_may_be_in_a_readable_directory(self, tmp_path, tmpdir_env):
        """--socket PATH in a directory of the user's that others can read (0755) is used."""
        directory = tmp_path / "sockets"
        directory.mkdir(mode=0o755)
        os.chmod(directory, 0o755)
        server = _control.ControlServer(versionload.Tracker(), (str(tmp_path),), directory / "s.sock")
        server.start()
        try:
            result = cli("history", "--socket", str(directory / "s.sock"), "--all")
        finally:
            server.stop()

        assert 0 == result.returncode, result.stderr


class TestPeerCredentials:
    def test_check_peer_on_a_socketpair(self):
        """The peer's uid comes from the kernel: our own uid passes, any other is refused."""
        if not hasattr(socket, "SO_PEERCRED"):
            pytest.skip("SO_PEERCRED is Linux only")
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with left, right:
            assert _control.check_peer(left) is None
            assert (os.getpid(), os.getuid(), os.getgid()) == _control.peer_credentials(left)
            refusal = _control.check_peer(left, uid=os.getuid() + 1)
        assert refusal is not None
        assert f"uid {os.getuid()}" in refusal

    @pytest.mark.skipif(os.getuid() != 0 or not hasattr(socket, "SO_PEERCRED"), reason="needs root and Linux")
    def test_other_user_is_refused(self, tmp_path, runtime):
        """A process of another user cannot connect (0600), and is refused even when the file lets it."""
        tracker = versionload.Tracker()
        public = Path(tempfile.mkdtemp(prefix="vl-pub-"))
        server = None
        try:
            os.chmod(public, 0o755)
            server = _control.ControlServer(tracker, (str(tmp_path),), path=public / "s.sock").start()
            assert "EACCES" == _connect_as_nobody(public / "s.sock")
            os.chmod(public / "s.sock", 0o666)  # only the credential check is left
            answer = json.loads(_connect_as_nobody(public / "s.sock"))
            assert (False, "refused") == (answer["ok"], answer["kind"])
            assert _control.request(public / "s.sock", {"op": "ping"})["ok"]
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(public, ignore_errors=True)


def _connect_as_nobody(path: Path) -> str:
    """
    Connect to ``path`` from a forked child that switched to the user nobody; its answer.
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # fork with threads: the child only makes syscalls
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(10)
            try:
                client.connect(str(path))
            except PermissionError:
                os.write(write_end, b"EACCES")
            else:
                with contextlib.suppress(OSError):
                    client.sendall(b'{"op": "history"}\n')
                os.write(write_end, client.recv(65536))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    os.waitpid(pid, 0)
    return data.decode()


def test_demo_runs(tmp_path):
    """The README's main command (the live_app demo) completes: a load, a reload, a failure, a rollback."""
    demo = Path(__file__).resolve().parent.parent / "examples" / "live_app" / "demo.py"
    result = subprocess.run([sys.executable, str(demo)], capture_output=True, text=True, timeout=120)
    assert 0 == result.returncode, result.stdout + result.stderr
    for expected in (
        "module.loaded",
        "module.reloaded",
        "module.reload_failed",
        "module.rolled_back",
        "demo complete",
    ):
        assert expected in result.stdout


NOISY = """
import re, sys, threading, time
import noisy_mod

stop = threading.Event()


def spam(stream, tag):
    for number in range(200_000):
        if stop.is_set():
            return
        # Written in two pieces, as print() does: a line of the program's own.
        stream.write(f"{tag} {number} " + "x" * 40)
        stream.write("\\n")
        if number % 7 == 0:
            stream.flush()
        time.sleep(0.0002)


threads = [threading.Thread(target=spam, args=(s, t)) for s, t in ((sys.stdout, "out"), (sys.stderr, "err"))]
# Before the threads: each stream has one writer at a time, so the program's own lines stay whole.
print("started", flush=True)
for thread in threads:
    thread.start()
deadline = time.monotonic() + 60
while noisy_mod.VALUE < 5 and time.monotonic() < deadline:
    time.sleep(0.01)
stop.set()
for thread in threads:
    thread.join()
print("final", noisy_mod.VALUE)
"""


class TestLogFile:
    """
    ``versionload run --log-file PATH``: events as JSON lines in a file of their own.
    """

    def test_noisy_program(self, tmp_path, runtime, bytecode):
        """Threads print on stdout and stderr during reloads: each log line is JSON, the output is intact."""
        app = tmp_path / "noisy"
        app.mkdir()
        (app / "noisy.py").write_text(textwrap.dedent(NOISY))
        module = app / "noisy_mod.py"
        module.write_text("VALUE = 0\n")
        log = tmp_path / "events.log"
        out, err = (tmp_path / "out.txt").open("w"), (tmp_path / "err.txt").open("w")
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        if not bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        process = subprocess.Popen(
            [sys.executable, "-m", "versionload", "run", "--log-file", str(log), str(app / "noisy.py")],
            stdout=out,
            stderr=err,
            env=env,
        )
        try:
            assert wait_for(lambda: "started" in (tmp_path / "out.txt").read_text(), timeout=30)

            def reloads() -> int:
                text = log.read_text() if log.exists() else ""
                return text.count('"event": "module.reloaded"')

            for value in range(1, 6):
                module.write_text(f"VALUE = {value}\n" + "# padding\n" * value)
                assert wait_for(lambda v=value: reloads() >= v, timeout=30), log.read_text()
            assert 0 == process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            out.close()
            err.close()
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        stdout = (tmp_path / "out.txt").read_text().splitlines()
        stderr = (tmp_path / "err.txt").read_text().splitlines()
        own = re.compile(r"^(out|err) \d+ x{40}$")

        assert [1, 2, 3, 4, 5] == [e["version"] - 1 for e in entries if e["event"] == "module.reloaded"]
        assert {"watcher"} == {e["reason"] for e in entries if e["event"] == "module.reloaded"}
        assert ["started", "final 5"] == [line for line in stdout if not own.match(line)]
        assert [] == [line for line in stderr if not own.match(line) or line.startswith("out")]


class TestReloadCommand:
    @staticmethod
    def _serve(tree, runtime):
        """
        A tracked app (app.base <- app.user) imported in this process, and a control server for it.
        """
        tree.write(
            {
                "journal.py": "ran = []\n",
                "app/__init__.py": "",
                "app/base.py": "import journal\njournal.ran.append(__name__)\nVALUE = 1\n",
                "app/user.py": "import journal\nfrom app import base\njournal.ran.append(__name__)\n",
            }
        )
        tracker = versionload.Tracker().install()
        importlib.import_module("app.user")
        journal = sys.modules["journal"]
        journal.ran.clear()
        server = _control.ControlServer(tracker, (str(tree.root),)).start()
        return tracker, server, journal

    def test_dry_run_shows_the_cascade_and_runs_nothing(self, tree, runtime):
        """reload --cascade --dry-run prints the ordered group; nothing is reloaded; without it, it is."""
        tracker, server, journal = self._serve(tree, runtime)
        try:
            dry = cli("reload", "--socket", str(server.path), "--cascade", "--dry-run", "app.base")
            ran_after_dry_run = list(journal.ran)
            real = cli("reload", "--socket", str(server.path), "app.base", "--cascade")
        finally:
            server.stop()
            tracker.uninstall()

        assert (0, []) == (dry.returncode, ran_after_dry_run), dry.stderr
        assert ["app.base", "app.user"] == [line.split()[0] for line in dry.stdout.splitlines()[1:]]
        assert "would run 2 module(s)" in dry.stdout
        assert 0 == real.returncode, real.stderr
        assert ["app.base", "app.user"] == journal.ran
        assert ["app.base  version 2", "app.user  version 2"] == [
            line.strip() for line in real.stdout.splitlines()[1:]
        ]

    def test_reloads_say_control(self, tree, runtime):
        """A reload through the control channel logs reason=control (its cascade's dependents: cascade)."""
        tracker, server, _ = self._serve(tree, runtime)
        events: list[versionload.Event] = []
        tracker.subscribe(events.append)
        try:
            result = cli("reload", "--socket", str(server.path), "app.base", "--cascade")
        finally:
            server.stop()
            tracker.uninstall()

        assert 0 == result.returncode, result.stderr
        assert [("app.base", "control"), ("app.user", "cascade")] == [
            (e.module, e.reason) for e in events if e.event == "module.reloaded"
        ]

    def test_patterns_bound_the_cascade(self, tree, runtime):
        """reload --cascade PATTERN reaches only the dependents the patterns match."""
        tracker, server, journal = self._serve(tree, runtime)
        try:
            result = cli("reload", "--socket", str(server.path), "app.base", "--cascade", "other.*")
        finally:
            server.stop()
            tracker.uninstall()

        assert 0 == result.returncode, result.stderr
        assert ["app.base"] == journal.ran

    def test_bad_reload_requests_are_refused(self, tree, runtime):
        """A reload request with a bad or untracked module, cascade or dry_run gets an error; nothing runs."""
        tracker, server, journal = self._serve(tree, runtime)
        requests = [
            ({"op": "reload"}, "bad_request"),
            ({"op": "reload", "module": 5}, "bad_request"),
            ({"op": "reload", "module": "app.base", "cascade": "app.*"}, "bad_request"),
            ({"op": "reload", "module": "app.base", "cascade": [1]}, "bad_request"),
            ({"op": "reload", "module": "app.base", "cascade": 1}, "bad_request"),
            ({"op": "reload", "module": "app.base", "dry_run": "no"}, "bad_request"),
            ({"op": "reload", "module": "no_such_module"}, "not_found"),
            ({"op": "reload", "module": "json", "dry_run": True}, "not_found"),  # loaded, not tracked
        ]
        try:
            answers = [_control.request(server.path, payload) for payload, _ in requests]
        finally:
            server.stop()
            tracker.uninstall()

        assert [(False, kind) for _, kind in requests] == [(a["ok"], a["kind"]) for a in answers]
        assert [] == journal.ran
