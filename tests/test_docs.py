"""
The documentation cannot rot: its code runs as part of the test suite.

- Every ```` ```python ```` block in ``README.md`` and ``docs/*.md`` runs. The blocks of
  one page run in order, in one namespace (a later block uses what an earlier one
  defined), in a fresh interpreter whose working directory is an empty temporary
  directory, first on ``sys.path``, so blocks can write modules there and import them.
  Tracebacks point at the page and line of the Markdown file.
- A block that cannot run (it uses a module of the reader's, or needs a server) is
  marked with an HTML comment starting ``<!-- no-run``, on the line right before its
  opening fence or right after its closing fence; say why in the comment:
  ``<!-- no-run: uses a module of the reader's -->``. It is invisible on the site.
- Every private module and name that ``docs/architecture.md`` names in backticks
  (``_engine.execute``, ``_live/watch.py``) exists, so the map keeps up with the house.
- Every script in ``examples/`` (a ``.py`` file with an ``if __name__ == "__main__":``
  block) runs and must exit with status 0, except a script with a line starting
  ``# no-run:`` and the reason (a server that runs until stopped, driven by another
  example script).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import importlib_metadata
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
SCRIPTS = sorted(
    path
    for path in (ROOT / "examples").rglob("*.py")
    if 'if __name__ == "__main__":' in path.read_text()
    and not any(line.startswith("# no-run:") for line in path.read_text().splitlines())
)
NO_RUN = "<!-- no-run"
OPENING = re.compile(r"^(?P<indent>\s*)```python\s*$")
CLOSING = re.compile(r"^\s*```\s*$")

# Runs the blocks of one page; line numbers are kept by padding with blank lines.
DRIVER = """
import json, sys
namespace = {"__name__": "__main__"}
for block in json.load(sys.stdin):
    exec(compile("\\n" * (block["line"] - 1) + block["code"], block["page"], "exec"), namespace)
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """
    The runnable ```python blocks of a Markdown text: (line of the first code line, code).
    """
    lines = text.splitlines()
    blocks: list[tuple[int, str]] = []
    index = 0
    while index < len(lines):
        opening = OPENING.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not CLOSING.match(lines[end]):
            end += 1
        before = lines[index - 1].strip() if index > 0 else ""
        after = lines[end + 1].strip() if end + 1 < len(lines) else ""
        if not (before.startswith(NO_RUN) or after.startswith(NO_RUN)):
            code = textwrap.dedent("\n".join(lines[index + 1 : end]))
            blocks.append((index + 2, code + "\n"))
        index = end + 1
    return blocks


def _pages_with_code() -> list[Path]:
    return [page for page in PAGES if python_blocks(page.read_text())]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


class TestPythonBlocks:
    def test_finds_blocks_and_skips_marked_ones(self):
        """Blocks are found with their line numbers; no-run before or after a block skips it."""
        text = textwrap.dedent(
            """\
            # Title

            ```python
            x = 1
            ```

            <!-- no-run: needs a server -->
            ```python
            connect()
            ```

            ```python
            serve()
            ```
            <!-- no-run: needs a server -->

            ```bash
            ls
            ```

            1. a step

               ```python
               y = x + 1
               ```
            """
        )

        assert [(4, "x = 1\n"), (24, "y = x + 1\n")] == python_blocks(text)

    def test_a_failing_block_fails_with_its_location(self, tmp_path):
        """The driver reports a failing block at its page and line."""
        page = tmp_path / "page.md"
        page.write_text("text\n\n```python\nok = 1\n```\n\n```python\nassert ok == 2\n```\n")

        result = _run_page(page, tmp_path)

        assert 0 != result.returncode
        assert f'File "{page}", line 8' in result.stderr


def _run_page(page: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    blocks = [
        {"page": str(page), "line": line, "code": code} for line, code in python_blocks(page.read_text())
    ]
    return subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=json.dumps(blocks),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_environment(),
        timeout=120,
    )


@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda page: str(page.relative_to(ROOT)))
def test_page_code_runs(page: Path, tmp_path: Path) -> None:
    """Every runnable python block of the page runs without error."""
    result = _run_page(page, tmp_path)

    assert 0 == result.returncode, result.stderr


def _example_plugins_installed() -> bool:
    names = {ep.name for ep in importlib_metadata.entry_points(group="plugin_host_demo.plugins")}
    return {"greeter", "wordcount"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda script: str(script.relative_to(ROOT)))
def test_example_runs(script: Path) -> None:
    """The example script runs to the end with exit status 0."""
    if "plugin_host" in script.parts and not _example_plugins_installed():
        pytest.skip("the example plugins are not installed: python3 dev.py test installs them")

    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_environment(),
        timeout=120,
    )

    assert 0 == result.returncode, result.stdout + result.stderr


# A backticked private module path and name: `_engine.execute`, `_plugins.units.dependency_order`.
PRIVATE_NAME = re.compile(r"`(_[a-z_]+(?:\.(?!py`)[A-Za-z_][A-Za-z0-9_]*)+)`")
# A backticked file of the package: `_errors.py`, `_live/watch.py`.
PRIVATE_FILE = re.compile(r"`(_[a-z_]+(?:/[a-z_]+)*\.py)`")


def names_exist(dotted: str) -> bool:
    """
    Whether ``versionload.<dotted>`` is a module, or a name in one (the longest module prefix).
    """
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(["versionload", *parts[:cut]]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


class TestArchitecture:
    """
    docs/architecture.md names only modules and names that exist.
    """

    def test_named_modules_and_names_exist(self):
        """Every backticked `_module.name` of the architecture page is a real module or name."""
        text = (ROOT / "docs" / "architecture.md").read_text()
        named = sorted(set(PRIVATE_NAME.findall(text)))

        assert len(named) > 20
        assert [] == [name for name in named if not names_exist(name)]

    def test_named_files_exist(self):
        """Every backticked file of the package on the architecture page exists."""
        text = (ROOT / "docs" / "architecture.md").read_text()
        files = sorted(set(PRIVATE_FILE.findall(text)))

        assert len(files) > 10
        assert [] == [name for name in files if not (ROOT / "versionload" / name).is_file()]

    def test_a_gone_name_is_noticed(self):
        """A name that was renamed or removed (the old `_source.fresh_code`) does not pass."""
        assert (True, True, False, False) == (
            names_exist("_source.read_source"),
            names_exist("_plugins.units.dependency_order"),
            names_exist("_source.fresh_code"),
            names_exist("_no_such_module.name"),
        )
