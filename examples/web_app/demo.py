"""
Edit the web app's handler module under load, and count what the clients saw.

1. start ``python -m versionload run --prune --watch DIR DIR/serve.py 0`` (a copy in a
   temporary directory, so the example's own files are never edited);
2. start 4 client threads requesting ``/`` back to back;
3. edit ``handlers.py``: a good edit, a syntax error, an edit that fails half-way, a
   fix; then roll ``handlers`` back with ``versionload rollback --pid``;
4. stop the clients and the server, and report: every answer must come from one
   whole version (``A``, ``B`` and ``helper()`` agree), and no request may fail.

Each step waits (at most 20 seconds) for the event or answer that proves it.
Exits 0 when every step was seen and the clients saw no error and no mixed answer.
"""

from __future__ import annotations

import http.client
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEP_TIMEOUT = 20.0
CLIENTS = 4
MAX_REQUESTS = 50_000  # per client: a bound should the stop signal be lost

GOOD = """
import time

A = {value}
time.sleep(0.05)
B = {value}


def answer():
    return f"{{A}},{{B}},{{helper()}}"


def helper():
    return {value}
"""
SYNTAX_ERROR = "A = 9\ndef answer(:\n"
FAILS_HALF_WAY = "import time\n\nA = 7\ntime.sleep(0.05)\nraise RuntimeError('fails half-way')\n"


class Server:
    """
    ``serve.py`` under ``versionload run``, with its log lines gathered.
    """

    def __init__(self, directory: Path) -> None:
        command = [sys.executable, "-m", "versionload", "run", "--prune", "--watch", str(directory)]
        command += [str(directory / "serve.py"), "0"]
        print("$ " + " ".join(["versionload", *command[3:]]), flush=True)
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        for stream in (self.process.stdout, self.process.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, what: str, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit(f"demo failed: no {what} within {STEP_TIMEOUT:.0f} seconds") from None
            found = re.search(pattern, line)
            if found:
                print(f"  log | {line[:160]}", flush=True)
                return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


class Clients:
    """
    Threads requesting ``/`` until stopped; every answer and error is kept.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[str] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        for _ in range(MAX_REQUESTS):
            if self.stop.is_set():
                return
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read().decode()
                with self.lock:
                    if response.status == 200:
                        self.answers.append(body)
                    else:
                        self.errors.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException) as error:
                with self.lock:
                    self.errors.append(repr(error))
            finally:
                connection.close()

    def wait_for_answer(self, expected: str) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            with self.lock:
                if self.answers and self.answers[-1] == expected:
                    print(f"  clients now get {expected!r}", flush=True)
                    return
            time.sleep(0.01)
        raise SystemExit(f"demo failed: the clients never got {expected!r}")

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def versionload(*arguments: str) -> None:
    print("$ versionload " + " ".join(arguments), flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "versionload", *arguments],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
    )
    sys.stdout.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"demo failed: `versionload {' '.join(arguments)}` exited with {result.returncode}")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="versionload-web-"))
    for name in ("serve.py", "handlers.py"):
        shutil.copy(HERE / name, workdir / name)
    target = workdir / "handlers.py"
    server = Server(workdir)
    clients: Clients | None = None
    try:
        port = int(server.wait_for_line("server start", r"serving on http://127\.0\.0\.1:(\d+)/").group(1))
        clients = Clients(port)
        clients.wait_for_answer("1,1,1")
        print("\n== a good edit", flush=True)
        target.write_text(GOOD.format(value=2))
        server.wait_for_line("reload", r"module\.reloaded.*handlers")
        clients.wait_for_answer("2,2,2")
        print("\n== a syntax error: the reload fails, version 2 keeps answering", flush=True)
        target.write_text(SYNTAX_ERROR)
        server.wait_for_line("failed reload", r"module\.reload_failed.*SyntaxError")
        print("\n== an edit that fails half-way: its A = 7 is never served", flush=True)
        target.write_text(FAILS_HALF_WAY)
        server.wait_for_line("failed reload", r"module\.reload_failed.*half-way")
        print("\n== the fix", flush=True)
        target.write_text(GOOD.format(value=4))
        server.wait_for_line("reload", r"module\.reloaded.*handlers")
        clients.wait_for_answer("4,4,4")
        print("\n== roll handlers back to version 2 from another terminal", flush=True)
        versionload("rollback", "--pid", str(server.process.pid), "handlers", "2")
        clients.wait_for_answer("2,2,2")
    finally:
        if clients is not None:
            clients.finish()
        status = server.stop()
        print(f"\nserver exited with status {status}", flush=True)
        shutil.rmtree(workdir, ignore_errors=True)
    mixed = [answer for answer in clients.answers if len(set(answer.split(","))) != 1]
    print(
        f"{len(clients.answers)} answers, {len(mixed)} mixed, {len(clients.errors)} errors "
        f"(first errors: {clients.errors[:3]})",
        flush=True,
    )
    if mixed or clients.errors:
        print("demo failed: some requests saw a half-reloaded module", flush=True)
        return 1
    print("demo complete: every request saw one whole version of handlers", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
