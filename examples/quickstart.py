"""
versionload in one minute: load, edit, reload, a failed reload, rollback.

Run it with ``python3 dev.py quickstart`` (or ``python examples/quickstart.py`` where
versionload is installed). It writes a small module to a temporary directory,
imports it with the hook installed and changes it as an editor would; each step
prints what the program sees and the events versionload emits.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import textwrap
from pathlib import Path

import structlog

import versionload

VERSION_1 = """
    GREETING = "hello"

    def greet(name):
        return f"{GREETING}, {name}!"

    # Survives reloads: the cache is only created on the first run.
    try:
        CACHE
    except NameError:
        CACHE = {}
"""

VERSION_2 = """
    GREETING = "good morning"

    def greet(name):
        return f"{GREETING}, {name}. Welcome back."

    def farewell(name):
        return f"goodbye, {name}"

    try:
        CACHE
    except NameError:
        CACHE = {}
"""

BROKEN = """
    GREETING = "half-written"

    def greet(name):
        return undefined_helper(name)

    raise RuntimeError("the configuration server is down")
"""


def step(title: str) -> None:
    print(f"\n== {title}")


def write(path: Path, source: str) -> None:
    path.write_text(textwrap.dedent(source))
    importlib.invalidate_caches()


def main() -> None:
    # Show every event, the load events (debug level) included.
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()),
        ]
    )
    workdir = Path(tempfile.mkdtemp(prefix="versionload-quickstart-"))
    sys.path.insert(0, str(workdir))
    source = workdir / "greetings.py"
    write(source, VERSION_1)

    step("install the hook and import: version 1 is recorded")
    versionload.install(include="greetings")
    import greetings

    greetings.CACHE["visits"] = 1
    print("greet:", greetings.greet("Ada"))
    held_elsewhere = greetings.greet  # as `from greetings import greet` would

    step("edit the file and reload: version 2, same module object, the cache survives")
    write(source, VERSION_2)
    versionload.reload(greetings)
    print("greet:", greetings.greet("Ada"))
    print("farewell:", greetings.farewell("Ada"))
    print("cache:", greetings.CACHE)
    # The old function object is not replaced, but it reads the module's globals,
    # which the reload rebound: old code, new GREETING.
    print("a reference taken before runs the old code:", held_elsewhere("Ada"))

    step("a broken edit: the reload fails and the module is left exactly as it was")
    write(source, BROKEN)
    try:
        versionload.reload(greetings)
    except versionload.ReloadError as error:
        print("ReloadError:", error)
        print("caused by:", repr(error.__cause__))
    print("greet still works:", greetings.greet("Ada"))

    step("roll back to version 1: names added since are gone, old objects are back")
    versionload.rollback(greetings, to=1)
    print("greet:", greetings.greet("Ada"))
    print("has farewell:", hasattr(greetings, "farewell"))
    print("cache is the same object:", greetings.CACHE)

    step("the history, and what changed between versions")
    for version in versionload.history(greetings):
        marker = "  <- current" if version.number == versionload.current(greetings).number else ""
        print(f"  #{version.number} {version.reason:8} {len(version.names)} names{marker}")
    print(" ", versionload.diff(greetings, 1, 2))

    versionload.uninstall()


if __name__ == "__main__":
    main()
