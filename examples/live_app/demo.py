"""
Drive ``versionload run`` on the live_app example, as a person at a terminal would.

1. start ``python -m versionload run --watch DIR DIR/app.py`` (a copy in a temporary
   directory, so the example's own files are never edited);
2. edit ``greeting.py``: the running program reloads it and prints the new message;
3. break ``greeting.py`` (a syntax error): the reload fails with file and line, and the
   program keeps running the previous version;
4. ask the program for its history with ``versionload history``, and roll ``greeting``
   back to version 1 with ``versionload rollback``;
5. stop the program.

Every line the program prints is shown: ``app |`` is its output, ``log |`` its
versionload events. Each step waits (at most 20 seconds) for the line that proves it.
Exits 0 when every step was seen, 1 otherwise.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
STEP_TIMEOUT = 20.0

VERSION_2 = '''"""
Edit this file while ``app.py`` runs: the next tick uses the new code.
"""

from __future__ import annotations


def message() -> str:
    return "HELLO FROM VERSION 2, reloaded while running"
'''

BROKEN = '''"""
A broken edit: the reload fails and version 2 keeps running.
"""


def message() -> str:
    return "this never runs" +
'''


class Program:
    """
    The program under ``versionload run``, with its output lines gathered from both pipes.
    """

    def __init__(self, directory: Path) -> None:
        # app.py's arguments: at most 100000 ticks, 0.3 seconds apart.
        command = [
            sys.executable,
            "-m",
            "versionload",
            "run",
            "--watch",
            str(directory),
            str(directory / "app.py"),
            "100000",
            "0.3",
        ]
        print("$ " + " ".join(["versionload", *command[3:]]), flush=True)
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        for stream, label in ((self.process.stdout, "app"), (self.process.stderr, "log")):
            threading.Thread(target=self._pump, args=(stream, label), daemon=True).start()

    def _pump(self, stream: IO[str], label: str) -> None:
        for line in stream:
            self.lines.put((label, line.rstrip("\n")))

    def drain(self) -> list[tuple[str, str]]:
        """
        Print the lines that have arrived so far, without waiting, and return them.
        """
        printed: list[tuple[str, str]] = []
        while True:
            try:
                label, line = self.lines.get_nowait()
            except queue.Empty:
                return printed
            print(f"{label} | {line}", flush=True)
            printed.append((label, line))

    def wait_for(
        self, what: str, *predicates: Callable[[str, str], bool], seen: Sequence[tuple[str, str]] = ()
    ) -> None:
        """
        Print the program's lines until each of ``predicates`` has matched one of them.

        The two pipes are read by two threads, so lines written close together may
        arrive in either order: waiting for all of them keeps each step's lines under
        its own heading. Lines in ``seen`` were printed already and count too.
        """
        pending = [p for p in predicates if not any(p(label, line) for label, line in seen)]
        deadline = time.monotonic() + STEP_TIMEOUT
        while pending:
            remaining = deadline - time.monotonic()
            try:
                label, line = self.lines.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise SystemExit(f"demo failed: no {what} within {STEP_TIMEOUT:.0f} seconds") from None
            print(f"{label} | {line}", flush=True)
            pending = [predicate for predicate in pending if not predicate(label, line)]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def versionload(program: Program, *arguments: str) -> list[tuple[str, str]]:
    """
    Run a ``versionload`` command against ``program``; return the program's lines printed meanwhile.

    The program keeps printing while the command starts up (a second or so), and those
    lines happened before the command's answer: they are printed before it, so that a
    tick still showing the old version never appears to follow a rollback.
    """
    program.drain()
    print("$ versionload " + " ".join(arguments), flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "versionload", *arguments],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
    )
    meanwhile = program.drain()
    sys.stdout.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"demo failed: `versionload {' '.join(arguments)}` exited with {result.returncode}")
    return meanwhile


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="versionload-demo-"))
    for name in ("app.py", "greeting.py"):
        shutil.copy(HERE / name, workdir / name)
    target = workdir / "greeting.py"
    step("start the program under live reloading")
    program = Program(workdir)
    pid = str(program.process.pid)
    try:
        program.wait_for(
            "first import and tick",
            lambda label, line: "module.loaded" in line and "greeting" in line,
            lambda label, line: label == "app" and "version 1" in line,
        )

        step("edit greeting.py: the running program reloads it")
        target.write_text(VERSION_2)
        program.wait_for(
            "reload event and new message",
            lambda label, line: "module.reloaded" in line and "greeting" in line,
            lambda label, line: label == "app" and "VERSION 2" in line,
        )

        step("break greeting.py: the reload fails, version 2 keeps running")
        target.write_text(BROKEN)
        program.wait_for("failure event", lambda label, line: "module.reload_failed" in line)
        program.wait_for(
            "a tick after the failure", lambda label, line: label == "app" and "VERSION 2" in line
        )

        step("ask the running program for the history of greeting")
        versionload(program, "history", "--pid", pid, "greeting")

        step("roll greeting back to version 1 from another terminal")
        meanwhile = versionload(program, "rollback", "--pid", pid, "greeting", "1")
        program.wait_for(
            "rollback event and old message",
            lambda label, line: "module.rolled_back" in line,
            lambda label, line: label == "app" and "version 1" in line,
            seen=meanwhile,
        )
    finally:
        step("stop the program")
        status = program.stop()
        how = " (stopped by SIGINT, as Ctrl-C would)" if status == 130 else ""
        print(f"program exited with status {status}{how}", flush=True)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        "\ndemo complete: a load, a reload, a failed reload that changed nothing, and a rollback", flush=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
