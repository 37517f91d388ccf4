#!/usr/bin/env python3
"""
Set-up and tasks for versionload, with nothing installed beforehand.

    python3 dev.py demo        # the main job: `versionload run --watch` on examples/live_app
    python3 dev.py quickstart  # load, edit, reload, failed reload, rollback (examples/quickstart.py)
    python3 dev.py plugins     # upgrade plugins while a host runs (examples/plugin_host/host.py)
    python3 dev.py test        # run the whole test suite (extra arguments go to pytest)
    python3 dev.py test --cov  # the same, measuring coverage, the programs the tests start included
    python3 dev.py lint        # ruff (lint and format check) and mypy
    python3 dev.py docs        # build the documentation site into site/ (mkdocs, strict)

Each task first makes ``.venv`` (a virtual environment with versionload installed in
editable mode with its dev and docs extras, and the example plugins of
examples/plugin_host installed in editable mode), and remakes it when pyproject.toml
or an example plugin's pyproject.toml changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".versionload-installed"
# Real distributions with entry points, for examples/plugin_host and its tests.
EXAMPLE_PLUGINS = [ROOT / "examples" / "plugin_host" / "plugins" / name for name in ("greeter", "wordcount")]


def _fingerprint() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    for plugin in EXAMPLE_PLUGINS:
        digest.update((plugin / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    if STAMP.exists() and STAMP.read_text() == _fingerprint() and PYTHON.exists():
        return
    if sys.version_info < (3, 10):  # noqa: UP036 - dev.py may be started by any python3
        sys.exit(f"versionload needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    print(f"setting up {VENV.relative_to(ROOT)} (first run, or pyproject.toml changed)...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    editables = [f"--editable={ROOT}[dev,docs]", *(f"--editable={path}" for path in EXAMPLE_PLUGINS)]
    result = subprocess.run([*pip, *editables], capture_output=True, text=True)
    # Some machines list find-links folders that do not exist; pip warns about each.
    noise = "WARNING: Location "
    for stream, text in ((sys.stdout, result.stdout), (sys.stderr, result.stderr)):
        stream.write("".join(line for line in text.splitlines(keepends=True) if not line.startswith(noise)))
    if result.returncode:
        sys.exit(f"installing versionload into {VENV} failed (pip exit code {result.returncode})")
    STAMP.write_text(_fingerprint())


def run(*command: str) -> int:
    return subprocess.run(command, cwd=ROOT).returncode


#: Set while the tests measure coverage: tests/conftest.py hands it on to the programs
#: the tests start (as COVERAGE_PROCESS_START), and pyproject.toml's data_file reads it.
SUBPROCESS_CONFIG = "VERSIONLOAD_COVERAGE_CONFIG"
SUBPROCESS_DATA = "VERSIONLOAD_COVERAGE_DATA"
_HOOK = "versionload_subprocess_coverage.pth"


@contextlib.contextmanager
def subprocess_coverage() -> Iterator[None]:
    """
    Let the processes the tests start (``versionload run``, ``python -m versionload``)
    measure themselves, into data files beside ``.coverage`` that pytest-cov combines.

    Each such process starts coverage from a ``.pth`` file when ``COVERAGE_PROCESS_START``
    is set. Recent versions of coverage install that file themselves; for older ones a
    hook is put into the virtual environment for the run and taken out afterwards, so
    the environment is unchanged whenever nothing is measured.
    """
    purelib = subprocess.run(
        [str(PYTHON), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    hook = Path(purelib) / _HOOK
    have_hook = any(
        "process_startup" in path.read_text(errors="replace")
        for path in Path(purelib).glob("*.pth")
        if path.name != _HOOK
    )
    if not have_hook:
        hook.write_text("import coverage; coverage.process_startup()\n")
    os.environ[SUBPROCESS_CONFIG] = str(ROOT / "pyproject.toml")
    os.environ[SUBPROCESS_DATA] = str(ROOT / ".coverage")
    try:
        yield
    finally:
        hook.unlink(missing_ok=True)
        del os.environ[SUBPROCESS_CONFIG], os.environ[SUBPROCESS_DATA]


def main(argv: list[str]) -> int:
    task, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if task in {"help", "-h", "--help"}:
        print(__doc__)
        return 0
    tasks = ("demo", "quickstart", "plugins", "test", "lint", "docs")
    if task not in tasks:
        print(f"unknown task {task!r}; tasks: {', '.join(tasks)}", file=sys.stderr)
        return 2
    ensure_venv()
    if task == "demo":
        return run(str(PYTHON), "examples/live_app/demo.py", *rest)
    if task == "quickstart":
        return run(str(PYTHON), "examples/quickstart.py", *rest)
    if task == "plugins":
        return run(str(PYTHON), "examples/plugin_host/host.py", *rest)
    if task == "docs":
        os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")  # mkdocs-material's banner about its future
        return run(str(BIN / "mkdocs"), "build", "--strict", *rest)
    if task == "test":
        if any(arg == "--cov" or arg.startswith("--cov=") for arg in rest):
            with subprocess_coverage():
                return run(str(PYTHON), "-m", "pytest", *rest)
        return run(str(PYTHON), "-m", "pytest", *rest)
    sources = ("versionload", "tests", "examples", "tools", "benchmarks", "dev.py")
    return (
        run(str(BIN / "ruff"), "check", *sources)
        or run(str(BIN / "ruff"), "format", "--check", *sources)
        or run(str(PYTHON), "-m", "mypy")
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
