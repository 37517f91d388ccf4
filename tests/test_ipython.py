"""
The IPython extension (``%load_ext versionload``) in a real `InteractiveShell`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import versionload

from .helpers import ModuleTree

pytest.importorskip("IPython")

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config


@pytest.fixture(name="ipython", scope="module")
def _ipython() -> Iterator[Any]:
    """
    One real IPython shell (no history file) for the module, warmed up before the
    per-test snapshot of ``sys.modules``, so IPython's lazily imported modules are
    not dropped (and imported again as different classes) between tests.
    """
    shell = InteractiveShell.instance(config=Config({"HistoryManager": {"enabled": False}}))
    shell.run_cell("1")
    shell.run_line_magic("load_ext", "versionload")
    shell.run_line_magic("unload_ext", "versionload")
    versionload.uninstall()  # loading installed the hook; each test starts without it
    yield shell
    InteractiveShell.clear_instance()


@pytest.fixture(name="shell")
def _shell(ipython: Any, tree: ModuleTree) -> Iterator[Any]:
    """
    The shell with the extension loaded, and unloaded afterwards.
    """
    ipython.run_line_magic("load_ext", "versionload")
    yield ipython
    if "versionload" in ipython.extension_manager.loaded:
        ipython.run_line_magic("unload_ext", "versionload")


def run(shell: Any, code: str) -> Any:
    result = shell.run_cell(code)
    result.raise_error()
    return result.result


class TestBeforeEachCell:
    def test_changed_module_is_reloaded_before_the_cell(self, shell, tree, capsys, bytecode):
        """A module edited between cells is reloaded, as a new version, before the next cell runs."""
        tree.module("nb_mod", "def f():\n    return 1\n")
        run(shell, "import nb_mod")
        tree.module("nb_mod", "def f():\n    return 2\n")
        assert 2 == run(shell, "nb_mod.f()")
        assert "reloaded nb_mod (version 2)" in capsys.readouterr().out
        assert [1, 2] == [v.number for v in versionload.history("nb_mod")]

    def test_unchanged_modules_are_left_alone(self, shell, tree):
        """Cells without edits record no new versions."""
        tree.module("nb_still", "A = 1\n")
        run(shell, "import nb_still")
        for _ in range(3):
            run(shell, "nb_still.A")
        assert 1 == len(versionload.history("nb_still"))

    def test_failing_edit_keeps_the_old_version(self, shell, tree, capsys):
        """An edit that fails is reported with file and line; the cell runs with the old version."""
        path = tree.module("nb_bad", "def f():\n    return 'old'\n")
        run(shell, "import nb_bad")
        tree.module("nb_bad", "def f():\n    return 'new'\n1 / 0\n")
        assert "old" == run(shell, "nb_bad.f()")
        assert f"failed at {path}:3" in capsys.readouterr().err
        assert 1 == versionload.current("nb_bad").number

    def test_edit_that_calls_sys_exit_keeps_the_old_version(self, shell, tree, capsys):
        """An edit whose code calls sys.exit() is a failed reload: the cell runs with the old version."""
        tree.module("nb_exit", "def f():\n    return 'old'\n")
        run(shell, "import nb_exit")
        tree.module("nb_exit", "def f():\n    return 'new'\nimport sys\nsys.exit(2)\n")
        assert "old" == run(shell, "nb_exit.f()")
        assert "reloading nb_exit failed" in capsys.readouterr().err
        tree.module("nb_exit", "def f():\n    return 'fixed'\n")

        assert "fixed" == run(shell, "nb_exit.f()")

    def test_module_imported_before_load_ext_is_adopted(self, ipython, tree):
        """A project module imported before the extension was loaded is adopted and reloaded."""
        tree.module("nb_early", "A = 1\n")
        run(ipython, "import nb_early")
        ipython.run_line_magic("load_ext", "versionload")
        try:
            tree.module("nb_early", "A = 22\n")
            assert 22 == run(ipython, "nb_early.A")
            assert ["adopted", "reload"] == [v.reason for v in versionload.history("nb_early")]
        finally:
            ipython.run_line_magic("unload_ext", "versionload")

    def test_unload_stops_reloading(self, shell, tree):
        """After %unload_ext, edits are no longer picked up before cells."""
        tree.module("nb_off", "A = 1\n")
        run(shell, "import nb_off")
        shell.run_line_magic("unload_ext", "versionload")
        tree.module("nb_off", "A = 2\n")
        assert 1 == run(shell, "nb_off.A")


class TestSettings:
    def test_load_ext_keeps_the_settings_in_force(self, ipython, tree, bytecode):
        """%load_ext after install(allowed_roots=..., max_versions=20) keeps both and prunes nothing."""
        tracker = versionload.install(allowed_roots=[tree.root], max_versions=20)
        tree.module("nb_kept", "VALUE = 0\n")
        module = __import__("nb_kept")
        for value in range(1, 15):
            tree.module("nb_kept", f"VALUE = {value}\n")
            versionload.reload(module)
        ipython.run_line_magic("load_ext", "versionload")
        try:
            versionload.install()
            expected = ((str(tree.root.resolve()),), 20, list(range(1, 16)))

            assert expected == (
                tracker.allowed_roots,
                tracker.max_versions,
                [v.number for v in versionload.history(module)],
            )
        finally:
            ipython.run_line_magic("unload_ext", "versionload")


class TestMagics:
    def test_history_diff_and_rollback(self, shell, tree, capsys):
        """%vl_history lists versions, %vl_diff shows what changed, %vl_rollback restores one."""
        tree.module("nb_magic", "def f():\n    return 1\n")
        run(shell, "import nb_magic")
        tree.module("nb_magic", "def f():\n    return 2\ndef g():\n    return 0\n")
        run(shell, "nb_magic.f()")
        capsys.readouterr()

        shell.run_line_magic("vl_history", "nb_magic")
        lines = capsys.readouterr().out.splitlines()
        assert ["1  import", "2  reload"] == [line[2:].strip()[:9].strip() for line in lines]
        assert lines[1].startswith("*")

        shell.run_line_magic("vl_history", "")
        assert "nb_magic: version 2" in capsys.readouterr().out

        shell.run_line_magic("vl_diff", "nb_magic 1 2")
        out = capsys.readouterr().out
        assert "added: g" in out
        assert "changed: f" in out

        shell.run_line_magic("vl_rollback", "nb_magic 1")
        assert "rolled nb_magic back to version 1 (was 2)" in capsys.readouterr().out
        assert 1 == run(shell, "nb_magic.f()")
        assert not hasattr(__import__("nb_magic"), "g")

    def test_undo(self, shell, tree, capsys):
        """%vl_undo undoes the reload made before a cell: the watcher's changeset, named by its file."""
        path = tree.module("nb_undo", "def f():\n    return 1\n")
        run(shell, "import nb_undo")
        tree.module("nb_undo", "def f():\n    return 2\n")
        assert 2 == run(shell, "nb_undo.f()")
        capsys.readouterr()

        shell.run_line_magic("vl_undo", "")

        reload, undo = versionload.changesets()
        assert f"undid changeset {reload.id} (nb_undo 2 -> 1)" in capsys.readouterr().out
        assert 1 == run(shell, "nb_undo.f()")
        assert (f"watch:{path}", "ipython") == (reload.trigger, undo.trigger)

    @pytest.mark.parametrize(
        ("magic", "line", "match"),
        [
            ("vl_rollback", "nb_unknown", "not tracked"),
            ("vl_rollback", "", "usage"),
            ("vl_diff", "nb_err 1", "usage"),
            ("vl_diff", "nb_err 1 x", "version number"),
            ("vl_diff", "nb_err 1 7", "no version 7"),
            ("vl_history", "a b", "usage"),
            ("vl_undo", "1 2", "usage"),
            ("vl_undo", "x", "changeset id"),
            ("vl_undo", "", "no changeset left to undo"),
            ("vl_undo", "5", "no changeset 5"),
        ],
    )
    def test_bad_input_is_a_usage_error(self, shell, tree, magic, line, match):
        """Bad magic arguments raise IPython's UsageError with the reason, changing nothing."""
        tree.module("nb_err", "A = 1\n")
        run(shell, "import nb_err")
        with pytest.raises(UsageError, match=match):
            shell.run_line_magic(magic, line)
        assert 1 == versionload.current("nb_err").number


class TestModes:
    def test_in_place_mode_updates_existing_instances(self, shell, tree, capsys, bytecode):
        """After %vl_mode in-place, an instance made before an edit runs the edited method."""
        tree.module("nb_cls", "class Greeter:\n    def hello(self):\n        return 'old'\n")
        run(shell, "%vl_mode in-place")
        run(shell, "import nb_cls\ng = nb_cls.Greeter()")
        tree.module("nb_cls", "class Greeter:\n    def hello(self):\n        return 'new'\n")

        assert "new" == run(shell, "g.hello()")
        assert "reload mode in-place" in capsys.readouterr().out

    def test_plain_mode_keeps_old_methods(self, shell, tree):
        """In the plain mode (the default) an old instance keeps its class's old method."""
        tree.module("nb_plain", "class Greeter:\n    def hello(self):\n        return 'old'\n")
        run(shell, "%vl_mode plain")
        run(shell, "import nb_plain\ng = nb_plain.Greeter()")
        tree.module("nb_plain", "class Greeter:\n    def hello(self):\n        return 'new'\n")

        assert ("old", "new") == run(shell, "g.hello(), nb_plain.Greeter().hello()")

    def test_cascade_mode_reloads_importers(self, shell, tree, capsys):
        """After %vl_mode cascade, a module that imported the edited one is reloaded with it."""
        tree.module("nb_base", "VALUE = 1\n")
        tree.module("nb_user", "from nb_base import VALUE\n")
        run(shell, "%vl_mode cascade")
        run(shell, "import nb_user")
        tree.module("nb_base", "VALUE = 2\n")

        assert 2 == run(shell, "nb_user.VALUE")
        assert "(with nb_user)" in capsys.readouterr().out

    def test_bad_mode_is_a_usage_error(self, shell):
        """An unknown mode is refused and names the modes."""
        with pytest.raises(UsageError, match="in-place"):
            shell.run_line_magic("vl_mode", "sideways")


class TestOutput:
    def test_one_line_with_the_changed_names(self, shell, tree, capsys):
        """A reload prints one line naming the module, its version and the names that changed."""
        tree.module("nb_names", "A = 1\nB = 2\n")
        run(shell, "%vl_mode plain")
        run(shell, "import nb_names")
        capsys.readouterr()
        tree.module("nb_names", "A = 1\nB = 3\nC = 4\n")
        run(shell, "nb_names.C")
        captured = capsys.readouterr()

        assert ["versionload: reloaded nb_names (version 2): +C, B"] == captured.out.splitlines()[:1]
        assert "" == captured.err

    def test_failure_shows_a_traceback_and_no_log_lines(self, shell, tree, capsys):
        """A failed reload prints a real traceback once, with no log record lines on top."""
        tree.module("nb_tb", "A = 1\n")
        run(shell, "import nb_tb")
        capsys.readouterr()
        tree.module("nb_tb", "A = 2\nraise LookupError('gone')\n")
        run(shell, "nb_tb.A")
        err = capsys.readouterr().err

        assert "Traceback (most recent call last):" in err
        assert err.rstrip().endswith("LookupError: gone")
        assert "module.reload_failed" not in err
        assert "(LookupError" not in err

    def test_help_lists_the_magics(self, shell, capsys):
        """%vl_help lists every %vl_ magic."""
        run(shell, "%vl_help")
        out = capsys.readouterr().out

        assert [] == [
            name
            for name in ("vl_mode", "vl_history", "vl_diff", "vl_rollback", "vl_help")
            if f"%{name}" not in out
        ]
