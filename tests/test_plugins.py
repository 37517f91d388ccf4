"""
The plugin host, on real distributions installed into a directory on ``sys.path``.
"""

from __future__ import annotations

import pickle
import sys
import textwrap
import threading
from pathlib import Path

import pluggy
import pytest

import versionload
from versionload.plugins import (
    PluggyBridge,
    Plugin,
    PluginCheckError,
    PluginError,
    PluginHost,
    PluginLoadError,
    PluginNotFoundError,
    PluginReloadError,
    PluginVersionNotFoundError,
    dependency_order,
)
from versionload.testing import capture_events

from .distributions import Site

GROUP = "testapp.plugins"

GREETER_V1 = {
    "greeter/__init__.py": """
        from .core import Greeter
        from .words import GREETING

        def make():
            return Greeter(GREETING)
    """,
    "greeter/core.py": """
        class Greeter:
            def __init__(self, greeting):
                self.greeting = greeting

            def greet(self, name):
                return f"{self.greeting}, {name}"
    """,
    "greeter/words.py": 'GREETING = "hello"\n',
}

GREETER_V2 = {
    **GREETER_V1,
    "greeter/core.py": """
        class Greeter:
            def __init__(self, greeting):
                self.greeting = greeting

            def greet(self, name):
                return f"{self.greeting}, {name}!"
    """,
    "greeter/words.py": 'GREETING = "howdy"\n',
}

SHOUT_V1 = {"shout.py": "def plugin(text):\n    return text.upper()\n"}


@pytest.fixture(name="site")
def _site(tmp_path: Path) -> Site:
    """
    An empty site directory first on ``sys.path``.
    """
    root = tmp_path / "site"
    root.mkdir()
    sys.path.insert(0, str(root))  # the autouse fixture restores sys.path
    return Site(root)


def install_greeter(site: Site, files: dict[str, str] = GREETER_V1, version: str = "1.0") -> None:
    site.install("greeter-dist", version, files, {GROUP: {"greeter": "greeter:make"}})


def install_shout(site: Site) -> None:
    site.install("shout", "0.3", SHOUT_V1, {GROUP: {"shout": "shout:plugin"}})


def greeting_is_polite(obj: object) -> bool:
    return not obj().greet("x").endswith("!!")  # type: ignore[operator]


class TestLoadAll:
    def test_loads_every_plugin_of_the_group(self, site, tracker):
        """Each entry point of the group is loaded with its distribution's name and version."""
        install_greeter(site)
        install_shout(site)
        site.install("other", "1.0", {"other.py": "x = 1\n"}, {"another.group": {"other": "other:x"}})

        plugins = PluginHost(GROUP, tracker=tracker).load_all()

        assert ["greeter", "shout"] == sorted(plugins)
        greeter = plugins["greeter"]
        assert ("greeter-dist", "1.0") == (greeter.distribution, greeter.dist_version)
        assert "hello, ann" == greeter.obj().greet("ann")
        assert "greeter:make" == greeter.value
        assert "LOUD" == plugins["shout"].obj("loud")
        assert "other" not in sys.modules

    def test_modules_are_recorded_by_the_hook(self, site, tracker):
        """A plugin loaded with the hook installed has its modules' imports as version 1."""
        install_greeter(site)

        plugin = PluginHost(GROUP, tracker=tracker).load_all()["greeter"]

        assert {"greeter", "greeter.core", "greeter.words"} == set(plugin.modules)
        assert ["import"] * 3 == [tracker.current(m).reason for m in plugin.modules]

    def test_modules_are_adopted_without_the_hook(self, site):
        """With the tracker's hook not installed, the host adopts the plugin's modules."""
        install_greeter(site)
        tracker = versionload.Tracker()

        plugin = PluginHost(GROUP, tracker=tracker).load_all()["greeter"]

        assert ["adopted"] * 3 == [tracker.current(m).reason for m in plugin.modules]

    def test_default_tracker(self, site):
        """Without a tracker argument the host records into the default tracker."""
        install_shout(site)

        PluginHost(GROUP).load_all()

        assert 1 == versionload.current("shout").number

    def test_modules_in_dependency_order(self, site, tracker):
        """The package comes after the submodules it imports from."""
        install_greeter(site)

        plugin = PluginHost(GROUP, tracker=tracker).load_all()["greeter"]

        assert "greeter" == plugin.modules[-1]

    @pytest.mark.parametrize(
        ("value", "files", "cause"),
        [
            ("missing_module:thing", {}, ModuleNotFoundError),
            ("half:absent", {"half.py": "present = 1\n"}, AttributeError),
            ("explodes:thing", {"explodes.py": "raise RuntimeError('no config')\n"}, RuntimeError),
        ],
        ids=["missing-module", "missing-attribute", "import-error"],
    )
    def test_broken_entry_point_is_reported(self, site, tracker, value, files, cause):
        """A broken entry point is in errors with its cause, and the other plugins load."""
        install_shout(site)
        site.install("broken", "2.0", files, {GROUP: {"broken": value}})

        host = PluginHost(GROUP, tracker=tracker)
        plugins = host.load_all()

        assert ["shout"] == list(plugins)
        error = host.errors["broken"]
        assert isinstance(error, PluginLoadError)
        assert isinstance(error.__cause__, cause)
        assert "broken" in str(error)
        assert value in str(error)
        assert "broken 2.0" in str(error)

    def test_plugin_failing_its_check_is_not_loaded(self, site, tracker):
        """A plugin that fails the check at load is reported, not loaded."""
        install_shout(site)
        install_greeter(site)

        host = PluginHost(GROUP, tracker=tracker, check=lambda obj: obj.__name__ != "plugin")

        assert ["greeter"] == list(host.load_all())
        assert isinstance(host.errors["shout"], PluginCheckError)

    def test_two_plugins_from_one_distribution(self, site, tracker):
        """Two entry points of one distribution in one package share the package's modules."""
        site.install(
            "casing",
            "1.0",
            {
                "casing/__init__.py": "",
                "casing/upper.py": "def plugin(text):\n    return text.upper()\n",
                "casing/lower.py": "def plugin(text):\n    return text.lower()\n",
            },
            {GROUP: {"upper": "casing.upper:plugin", "lower": "casing.lower:plugin"}},
        )

        host = PluginHost(GROUP, tracker=tracker)
        plugins = host.load_all()

        assert ("AB", "ab") == (plugins["upper"].obj("aB"), plugins["lower"].obj("aB"))
        assert {"casing", "casing.upper", "casing.lower"} == set(plugins["upper"].modules)
        assert plugins["upper"].modules == plugins["lower"].modules
        assert ("casing", "casing") == (plugins["upper"].distribution, plugins["lower"].distribution)

    def test_second_call_loads_new_plugins_only(self, site, tracker):
        """Calling load_all again keeps loaded plugins and loads newly installed ones."""
        install_greeter(site)
        host = PluginHost(GROUP, tracker=tracker)
        first = host.load_all()["greeter"]
        install_shout(site)

        plugins = host.load_all()

        assert ["greeter", "shout"] == sorted(plugins)
        assert first is plugins["greeter"]

    def test_name_clash_is_reported(self, site, tracker):
        """A second distribution offering a taken name is reported and ignored."""
        install_shout(site)
        site.install(
            "impostor", "9.9", {"impostor.py": "plugin = None\n"}, {GROUP: {"shout": "impostor:plugin"}}
        )

        host = PluginHost(GROUP, tracker=tracker)
        plugins = host.load_all()

        assert ["shout"] == list(plugins)
        assert 1 == len(host.errors)
        assert "same name" in str(next(iter(host.errors.values())))

    def test_events(self, site, tracker):
        """Discovery and load emit plugin events with the distribution and module versions."""
        install_shout(site)

        with capture_events(tracker) as events:
            PluginHost(GROUP, tracker=tracker).load_all()

        plugin_events = [e for e in events if e.event.startswith("plugin.")]
        assert ["plugin.discovered", "plugin.loaded"] == [e.event for e in plugin_events]
        loaded = plugin_events[1].fields()
        assert {
            "module": "shout",
            "reason": "requested",
            "plugin": "shout",
            "group": GROUP,
            "distribution": "shout",
            "dist_version": "0.3",
            "modules": ["shout"],
            "versions": [1],
            "version": 1,
        } == loaded


class TestLookup:
    def test_unknown_name_raises_key_error(self, site, tracker):
        """host[name] for a name that is not loaded raises a KeyError naming the plugin."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()

        with pytest.raises(KeyError, match="no plugin 'nope'") as caught:
            host["nope"]
        assert isinstance(caught.value, PluginNotFoundError)
        assert isinstance(caught.value, versionload.VersionLoadError)
        assert "nope" not in host
        assert "shout" in host

    def test_bad_arguments(self, tracker):
        """A bad group, check or hook name is an InvalidArgumentError."""
        with pytest.raises(versionload.InvalidArgumentError):
            PluginHost("", tracker=tracker)
        with pytest.raises(versionload.InvalidArgumentError):
            PluginHost(GROUP, tracker=tracker, check=42)  # type: ignore[arg-type]
        with pytest.raises(versionload.InvalidArgumentError):
            PluginHost(GROUP, tracker=tracker).on("before_lunch", print)  # type: ignore[call-overload]


class TestReload:
    def test_upgrade_is_picked_up(self, site, tracker, bytecode):
        """After an upgrade, reload runs every new module and records the new dist version."""
        install_greeter(site)
        host = PluginHost(GROUP, tracker=tracker)
        old = host.load_all()["greeter"]
        install_greeter(site, GREETER_V2, "2.0")

        new = host.reload("greeter")

        assert "howdy, ann!" == new.obj().greet("ann")
        assert new is host["greeter"]
        assert ("2.0", 2) == (new.dist_version, new.version)
        assert old.obj is not new.obj
        assert {"greeter": 2, "greeter.core": 2, "greeter.words": 2} == dict(
            host.history("greeter")[1].modules
        )

    def test_package_reloads_after_its_submodules(self, site, tracker):
        """A package binding constants from its submodule sees the new values (submodules go first)."""
        install_greeter(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        install_greeter(site, GREETER_V2, "2.0")

        host.reload("greeter")

        assert "howdy" == sys.modules["greeter"].GREETING

    @pytest.mark.parametrize("hook", [True, False], ids=["hook", "adopted"])
    def test_sibling_constants_reload_first(self, site, hook):
        """A module importing a constant from a sibling is reloaded after it, with or without the hook."""
        files = {
            "sib/__init__.py": "from .b import plugin\n",
            "sib/b.py": "from .c import VALUE\n\ndef plugin():\n    return VALUE\n",
            "sib/c.py": "VALUE = 1\n",
        }
        points = {GROUP: {"sib": "sib:plugin"}}
        site.install("sib", "1.0", files, points)
        tracker = versionload.Tracker()
        if hook:
            tracker.install()
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        site.upgrade("sib", "2.0", {**files, "sib/c.py": "VALUE = 2\n"}, points)

        plugin = host.reload("sib")

        assert 2 == plugin.obj()
        assert ("sib.c", "sib.b", "sib") == plugin.modules

    def test_check_failure_rolls_back(self, site, tracker):
        """A reload failing the check leaves every module at its previous version and host[name] unchanged."""
        install_greeter(site)
        host = PluginHost(GROUP, tracker=tracker, check=greeting_is_polite)
        old = host.load_all()["greeter"]
        rude = {
            **GREETER_V2,
            "greeter/words.py": 'GREETING = "hey"\n',
            "greeter/core.py": GREETER_V2["greeter/core.py"].replace('!"', '!!"'),
        }
        install_greeter(site, rude, "3.0")

        with capture_events(tracker) as events, pytest.raises(PluginCheckError, match="greeter") as caught:
            host.reload("greeter")

        assert caught.value.plugin == "greeter"
        assert old is host["greeter"]
        assert "hello, ann" == sys.modules["greeter"].make().greet("ann")
        assert [1, 1, 1] == [tracker.current(m).number for m in old.modules]
        assert 1 == len(host.history("greeter"))
        names = [e.event for e in events if e.event.startswith("plugin.")]
        assert ["plugin.check_failed", "plugin.rolled_back"] == names
        rolled = {e.reason for e in events if e.event == "module.rolled_back"}
        assert {"check_failed"} == rolled
        (failed,) = [e for e in events if e.event == "plugin.check_failed"]
        assert isinstance(failed.exc_info, PluginCheckError)

    def test_check_returning_false_rolls_back(self, site, tracker):
        """A check returning False counts as a failure."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker, check=lambda obj: obj("a") == "A")
        old = host.load_all()["shout"]
        site.upgrade(
            "shout",
            "0.4",
            {"shout.py": "def plugin(text):\n    return text\n"},
            {GROUP: {"shout": "shout:plugin"}},
        )

        with pytest.raises(PluginCheckError, match="returned False"):
            host.reload("shout")

        assert "A" == host["shout"].obj("a")
        assert old is host["shout"]

    def test_failing_module_rolls_back_the_ones_already_reloaded(self, site, tracker, bytecode):
        """When a later module fails to reload, the earlier ones are rolled back too."""
        install_greeter(site)
        host = PluginHost(GROUP, tracker=tracker)
        old = host.load_all()["greeter"]
        broken = {
            **GREETER_V2,
            "greeter/__init__.py": GREETER_V1["greeter/__init__.py"] + "\nraise ValueError('bad')\n",
        }
        install_greeter(site, broken, "2.0")

        with pytest.raises(PluginReloadError, match="greeter") as caught:
            host.reload("greeter")

        assert isinstance(caught.value, versionload.ReloadError)
        assert old is host["greeter"]
        assert [1, 1, 1] == [tracker.current(m).number for m in old.modules]
        assert "hello" == sys.modules["greeter.words"].GREETING
        assert "hello, ann" == old.obj().greet("ann")

    def test_module_first_imported_by_a_failed_reload_is_removed(self, site, tracker):
        """A submodule that only the failed new version imported is not left in sys.modules."""
        install_greeter(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        broken = {
            **GREETER_V1,
            "greeter/extra.py": "EXTRA = 1\n",
            "greeter/__init__.py": "from . import extra\n" + GREETER_V1["greeter/__init__.py"] + "\n1/0\n",
        }
        install_greeter(site, broken, "2.0")

        with pytest.raises(PluginReloadError):
            host.reload("greeter")

        assert "greeter.extra" not in sys.modules
        assert "greeter.extra" not in tracker.tracked()

    def test_renamed_attribute_rolls_back(self, site, tracker):
        """An entry point that no longer resolves after the reload is a reload failure."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        site.upgrade(
            "shout",
            "0.4",
            {"shout.py": "def renamed(text):\n    return text\n"},
            {GROUP: {"shout": "shout:plugin"}},
        )

        with pytest.raises(PluginReloadError, match="does not resolve"):
            host.reload("shout")

        assert "A" == sys.modules["shout"].plugin("a")

    def test_entry_point_value_change_is_followed(self, site, tracker):
        """An upgrade that points the entry point at another attribute is resolved from the new metadata."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        site.upgrade(
            "shout",
            "0.4",
            {"shout.py": "def v2(text):\n    return text + '!'\n"},
            {GROUP: {"shout": "shout:v2"}},
        )

        plugin = host.reload("shout")

        assert ("a!", "shout:v2") == (plugin.obj("a"), plugin.value)

    def test_uninstalled_plugin_is_not_reloaded(self, site, tracker):
        """A plugin whose distribution is gone cannot be reloaded, and nothing changes."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        old = host.load_all()["shout"]
        site.uninstall("shout")

        with pytest.raises(PluginReloadError, match="no longer installed"):
            host.reload("shout")

        assert old is host["shout"]
        assert 1 == tracker.current("shout").number

    def test_siblings_of_one_distribution_reload_together(self, site, tracker):
        """Reloading one plugin of a shared package refreshes the other plugin of that package."""
        files = {
            "casing/__init__.py": "",
            "casing/upper.py": "def plugin(text):\n    return text.upper()\n",
            "casing/lower.py": "def plugin(text):\n    return text.lower()\n",
        }
        points = {GROUP: {"upper": "casing.upper:plugin", "lower": "casing.lower:plugin"}}
        site.install("casing", "1.0", files, points)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        site.upgrade(
            "casing",
            "1.1",
            {**files, "casing/lower.py": "def plugin(text):\n    return '<' + text.lower()\n"},
            points,
        )

        host.reload("upper")

        assert "<ab" == host["lower"].obj("aB")
        assert (2, 2) == (host["upper"].version, host["lower"].version)
        assert "1.1" == host["lower"].dist_version

    def test_refused_when_versions_cannot_be_kept(self, site):
        """With one version kept per module a reload could not be undone, so it is refused."""
        install_shout(site)
        tracker = versionload.Tracker(max_versions=1)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()

        with pytest.raises(PluginReloadError, match="keeps 1 version"):
            host.reload("shout")

        assert 1 == tracker.current("shout").number

    def test_module_removed_by_the_upgrade_is_left_alone(self, site, tracker):
        """A module whose file the new version removed is not reloaded, and the reload succeeds."""
        files = {
            **GREETER_V1,
            "greeter/legacy.py": "OLD = True\n",
            "greeter/__init__.py": "from . import legacy\n"
            + textwrap.dedent(GREETER_V1["greeter/__init__.py"]),
        }
        install_greeter(site, files)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        site.path("greeter/legacy.py").unlink()
        install_greeter(site, GREETER_V2, "2.0")

        plugin = host.reload("greeter")

        assert "howdy, ann!" == plugin.obj().greet("ann")
        assert 1 == tracker.current("greeter.legacy").number

    def test_plugin_state_migrates(self, site, tracker):
        """A plugin module's __versionload_migrate__ carries its state over to the new version."""
        source = """
            calls = 0

            def plugin():
                global calls
                calls += 1
                return calls

            def __versionload_migrate__(previous):
                global calls
                calls = previous["calls"]
        """
        points = {GROUP: {"counter": "counter_plugin:plugin"}}
        site.install("counter", "1.0", {"counter_plugin.py": source}, points)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()["counter"].obj()
        host["counter"].obj()

        plugin = host.reload("counter")

        assert 3 == plugin.obj()

    def test_unknown_plugin(self, tracker):
        """Reloading a name that is not loaded raises PluginNotFoundError."""
        with pytest.raises(PluginNotFoundError):
            PluginHost(GROUP, tracker=tracker).reload("ghost")

    def test_before_load_all(self, site, tracker):
        """Asking for a plugin before load_all ran says that nothing is loaded yet."""
        install_shout(site)
        with pytest.raises(PluginNotFoundError, match=r"nothing has been loaded yet \(load_all\(\)"):
            PluginHost(GROUP, tracker=tracker).reload("shout")

    def test_events(self, site, tracker):
        """A successful reload emits plugin.reloaded with the new module versions."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()

        with capture_events(tracker) as events:
            host.reload("shout")

        reloaded = [e for e in events if e.event == "plugin.reloaded"]
        assert 1 == len(reloaded)
        fields = reloaded[0].fields()
        assert (["shout"], [2], 2, 1) == (
            fields["modules"],
            fields["versions"],
            fields["version"],
            fields["previous_version"],
        )

    def test_no_cascade_event_without_a_trigger(self, site, tracker):
        """A plain plugin reload logs no cascade event; its modules' group event is group.reloaded."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()

        with capture_events(tracker) as events:
            host.reload("shout")

        assert [] == [e.event for e in events if e.event.startswith("cascade.")]
        assert ["requested"] == [e.reason for e in events if e.event == "module.reloaded"]


class TestHooks:
    def test_before_and_after_reload(self, site, tracker):
        """before_reload gets the current plugin and after_reload the old and the new one."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        old = host.load_all()["shout"]
        calls: list[tuple[str, Plugin, ...]] = []
        host.on("before_reload", lambda plugin: calls.append(("before", plugin)))
        host.on("after_reload", lambda a, b: calls.append(("after", a, b)))

        new = host.reload("shout")

        assert [("before", old), ("after", old, new)] == calls

    def test_after_runs_when_the_reload_fails(self, site, tracker):
        """after_reload runs, with the unchanged plugin as old and new, when the reload failed."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        old = host.load_all()["shout"]
        host.add_check(lambda obj: False)
        calls = []
        host.on("after_reload", lambda a, b: calls.append((a, b)))

        with pytest.raises(PluginCheckError):
            host.reload("shout")

        assert [(old, old)] == calls

    def test_removed_check_no_longer_runs(self, site, tracker):
        """A check taken away with remove_check() does not stop the next reload."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()

        def refuse(obj):
            return False

        host.add_check(refuse)
        host.add_check(refuse)
        host.remove_check(refuse)
        host.remove_check(greeting_is_polite)  # never added: ignored

        assert 2 == host.reload("shout").version

    def test_before_raising_aborts(self, site, tracker):
        """A before_reload callback that raises stops the reload before anything changes."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        old = host.load_all()["shout"]

        def refuse(plugin):
            raise RuntimeError("busy")

        host.on("before_reload", refuse)

        with pytest.raises(PluginError, match="busy") as caught:
            host.reload("shout")

        assert isinstance(caught.value.__cause__, RuntimeError)
        assert old is host["shout"]
        assert 1 == tracker.current("shout").number

    def test_off(self, site, tracker):
        """A callback removed with off is not called."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        calls = []
        host.on("before_rollback", calls.append)
        host.off("before_rollback", calls.append)
        host.reload("shout")

        host.rollback("shout")

        assert [] == calls

    def test_rollback_hooks(self, site, tracker):
        """before_rollback and after_rollback see the plugin before and after."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        current = host.reload("shout")
        calls = []
        host.on("before_rollback", lambda plugin: calls.append(plugin))
        host.on("after_rollback", lambda a, b: calls.append((a, b)))

        back = host.rollback("shout")

        assert [current, (current, back)] == calls


class TestRollback:
    def test_back_to_the_previous_version(self, site, tracker):
        """rollback() with no version returns every module to the state before the current."""
        install_greeter(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        install_greeter(site, GREETER_V2, "2.0")
        host.reload("greeter")

        plugin = host.rollback("greeter")

        assert "hello, ann" == plugin.obj().greet("ann")
        assert (1, "1.0") == (plugin.version, plugin.dist_version)
        assert {"greeter": 1, "greeter.core": 1, "greeter.words": 1} == {
            m: tracker.current(m).number for m in plugin.modules
        }

    def test_to_a_given_version_and_forward_again(self, site, tracker):
        """rollback(to=n) reaches any recorded state, also a later one."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        site.upgrade(
            "shout",
            "0.4",
            {"shout.py": "def plugin(text):\n    return text + '2'\n"},
            {GROUP: {"shout": "shout:plugin"}},
        )
        host.reload("shout")
        site.upgrade(
            "shout",
            "0.5",
            {"shout.py": "def plugin(text):\n    return text + '3'\n"},
            {GROUP: {"shout": "shout:plugin"}},
        )
        host.reload("shout")

        assert "A" == host.rollback("shout", to=1).obj("a")
        assert "a2" == host.rollback("shout", to=2).obj("a")
        assert [1, 2, 3] == [v.number for v in host.history("shout")]

    def test_events(self, site, tracker):
        """A requested rollback emits plugin.rolled_back with reason requested."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        host.reload("shout")

        with capture_events(tracker) as events:
            host.rollback("shout")

        rolled = [e.fields() for e in events if e.event == "plugin.rolled_back"]
        assert [(1, 2, "requested", [1])] == [
            (f["version"], f["previous_version"], f["reason"], f["versions"]) for f in rolled
        ]

    def test_unknown_version(self, site, tracker):
        """A version the plugin does not have raises PluginVersionNotFoundError and changes nothing."""
        install_shout(site)
        host = PluginHost(GROUP, tracker=tracker)
        old = host.load_all()["shout"]

        with pytest.raises(PluginVersionNotFoundError, match="no version below 1"):
            host.rollback("shout")
        with pytest.raises(PluginVersionNotFoundError, match="no version 7"):
            host.rollback("shout", to=7)
        with pytest.raises(versionload.InvalidArgumentError):
            host.rollback("shout", to="1")  # type: ignore[arg-type]
        assert old is host["shout"]

    def test_pruned_module_version(self, site):
        """A plugin version whose module versions were pruned cannot be restored."""
        install_shout(site)
        tracker = versionload.Tracker(max_versions=2).install()
        try:
            host = PluginHost(GROUP, tracker=tracker)
            host.load_all()
            host.reload("shout")
            host.reload("shout")

            with pytest.raises(PluginVersionNotFoundError, match="pruned"):
                host.rollback("shout", to=1)
            assert 3 == tracker.current("shout").number
        finally:
            tracker.uninstall()


class TestHistory:
    def test_records_module_versions(self, site, tracker):
        """Each state records the dist version and the number of every module."""
        install_greeter(site)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        install_greeter(site, GREETER_V2, "2.0")
        host.reload("greeter")

        history = host.history("greeter")

        assert [(1, "load", "1.0"), (2, "reload", "2.0")] == [
            (v.number, v.reason, v.dist_version) for v in history
        ]
        assert {"greeter": 1, "greeter.core": 1, "greeter.words": 1} == dict(history[0].modules)


class TestDependencyOrder:
    def test_importers_come_after_what_they_import(self, tree):
        """A module that bound a class from another comes after it, whatever the rank says."""
        tree.write(
            {
                "dep_pkg/__init__.py": "",
                "dep_pkg/base.py": "class Base:\n    pass\n",
                "dep_pkg/child.py": "from .base import Base\n\nclass Child(Base):\n    pass\n",
            }
        )
        import dep_pkg.child  # noqa: F401

        names = ["dep_pkg.child", "dep_pkg.base", "dep_pkg"]
        ordered = dependency_order(names, {"dep_pkg.child": 0, "dep_pkg": 1, "dep_pkg.base": 2})

        assert ordered.index("dep_pkg.base") < ordered.index("dep_pkg.child")

    def test_absolute_import_of_a_sibling(self, tree):
        """A submodule doing ``import pkg.other`` still comes before the package, after the sibling."""
        tree.write(
            {
                "abs_pkg/__init__.py": "from .user import Thing\n",
                "abs_pkg/user.py": "import abs_pkg.base\n\nclass Thing(abs_pkg.base.Base):\n    pass\n",
                "abs_pkg/base.py": "class Base:\n    pass\n",
            }
        )
        import abs_pkg  # noqa: F401

        names = ["abs_pkg", "abs_pkg.user", "abs_pkg.base"]
        ordered = dependency_order(names, {"abs_pkg": 0, "abs_pkg.user": 1, "abs_pkg.base": 2})

        assert "abs_pkg" == ordered[-1]

    def test_a_module_comes_after_an_import_cycle_it_depends_on(self, tree):
        """A module that imports from a cycle comes after the whole cycle, even when it was tracked first."""
        tree.write(
            {
                "cyc_pkg/__init__.py": "",
                "cyc_pkg/a.py": "from . import b\n\ndef f():\n    return b\n",
                "cyc_pkg/b.py": "from . import a\n\ndef g():\n    return a\n",
                "cyc_pkg/user.py": "from .a import f\n",
            }
        )
        import cyc_pkg.user  # noqa: F401

        names = ["cyc_pkg.user", "cyc_pkg.a", "cyc_pkg.b"]
        ordered = dependency_order(names, {"cyc_pkg.user": 0, "cyc_pkg.a": 1, "cyc_pkg.b": 2})

        assert ["cyc_pkg.a", "cyc_pkg.b", "cyc_pkg.user"] == ordered

    def test_same_order_as_a_cascade(self, tree, tracker):
        """For modules the graph links, a unit's order is the order a cascade reloads them in."""
        tree.write(
            {
                "same_pkg/__init__.py": "",
                "same_pkg/base.py": "X = 1\n",
                "same_pkg/mid.py": "from . import base\n",
                "same_pkg/top.py": "from . import mid\n",
            }
        )
        import same_pkg.top  # noqa: F401

        names = ["same_pkg.base", "same_pkg.mid", "same_pkg.top"]
        rank = {name: index for index, name in enumerate(tracker.tracked())}
        events = []
        tracker.subscribe(events.append)
        tracker.reload("same_pkg.base", cascade=True)
        cascade = [e.module for e in events if e.event == "module.reloaded"]

        assert cascade == dependency_order(list(reversed(names)), rank, tracker.dependency_map())


class TestErrors:
    def test_errors_pickle(self):
        """Plugin errors survive pickling with their attributes."""
        error = PluginReloadError("boom", plugin="p", module="m")
        copy = pickle.loads(pickle.dumps(error))
        assert ("boom", "p", "m") == (str(copy), copy.plugin, copy.module)
        check = pickle.loads(pickle.dumps(PluginCheckError("bad", plugin="q")))
        assert ("bad", "q") == (str(check), check.plugin)


# -- pluggy ---------------------------------------------------------------------------------

SPECS = {
    "hookspecs_app.py": """
        import pluggy

        hookspec = pluggy.HookspecMarker("testapp")

        @hookspec
        def transform(text):
            '''Return the text, transformed.'''
    """,
}


V1_IMPL = "@hookimpl\ndef transform(text):\n    return text + '1'\n"
V2_IMPL = "@hookimpl\ndef transform(text):\n    return text + '2'\n"


def _pluggy_plugin(body: str) -> dict[str, str]:
    return {
        "pluggy_plug/__init__.py": "import pluggy\n\nhookimpl = pluggy.HookimplMarker('testapp')\n\n" + body,
    }


@pytest.fixture(name="manager")
def _manager(site: Site) -> pluggy.PluginManager:
    site.install("hookspecs-app", "1.0", SPECS)
    import hookspecs_app

    manager = pluggy.PluginManager("testapp")
    manager.add_hookspecs(hookspecs_app)
    return manager


class TestPluggyBridge:
    def test_register_all(self, site, tracker, manager):
        """register_all registers every loaded plugin under its entry point name."""
        site.install("pp", "1.0", _pluggy_plugin(V1_IMPL), {GROUP: {"pp": "pluggy_plug"}})
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        bridge = PluggyBridge(host, manager)

        assert ["pp"] == bridge.register_all()
        assert ["a1"] == manager.hook.transform(text="a")

    def test_reload_reregisters(self, site, tracker, manager):
        """After a reload the manager calls the new hook implementation, also for a module plugin."""
        points = {GROUP: {"pp": "pluggy_plug"}}
        site.install("pp", "1.0", _pluggy_plugin(V1_IMPL), points)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        PluggyBridge(host, manager).register_all()
        site.upgrade("pp", "2.0", _pluggy_plugin(V2_IMPL), points)

        host.reload("pp")

        assert ["a2"] == manager.hook.transform(text="a")
        host.rollback("pp")
        assert ["a1"] == manager.hook.transform(text="a")

    def test_invalid_implementation_is_rolled_back(self, site, tracker, manager):
        """A reloaded plugin whose hook no longer matches the spec is rolled back and stays registered."""
        points = {GROUP: {"pp": "pluggy_plug"}}
        site.install("pp", "1.0", _pluggy_plugin(V1_IMPL), points)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        PluggyBridge(host, manager).register_all()
        site.upgrade(
            "pp", "2.0", _pluggy_plugin("@hookimpl\ndef transform(text, extra):\n    return text\n"), points
        )

        with pytest.raises(PluginCheckError, match="PluginValidationError"):
            host.reload("pp")

        assert ["a1"] == manager.hook.transform(text="a")
        assert host["pp"].obj is manager.get_plugin("pp")

    def test_close(self, site, tracker, manager):
        """After close, reloads no longer touch the manager."""
        points = {GROUP: {"pp": "pluggy_plug"}}
        site.install("pp", "1.0", _pluggy_plugin(V1_IMPL), points)
        host = PluginHost(GROUP, tracker=tracker)
        host.load_all()
        bridge = PluggyBridge(host, manager)
        bridge.register_all()
        bridge.close()
        site.upgrade("pp", "2.0", _pluggy_plugin(V2_IMPL), points)

        host.reload("pp")

        assert ["a1"] == manager.hook.transform(text="a")

    def test_not_a_manager(self, tracker):
        """Passing something that is not a PluginManager is an InvalidArgumentError."""
        with pytest.raises(versionload.InvalidArgumentError):
            PluggyBridge(PluginHost(GROUP, tracker=tracker), object())  # type: ignore[arg-type]


class TestConcurrency:
    def test_worker_gated_by_hooks_never_sees_a_rejected_version(self, site, tracker):
        """A worker calling plugins under a lock that the hooks take keeps running through reloads."""
        install_shout(site)
        accepting = threading.Event()
        accepting.set()
        host = PluginHost(GROUP, tracker=tracker, check=lambda obj: accepting.is_set())
        host.load_all()
        gate = threading.RLock()
        host.on("before_reload", lambda plugin: gate.acquire())
        host.on("after_reload", lambda old, new: gate.release())
        stop = threading.Event()
        seen: list[str] = []

        def worker():
            while not stop.is_set():
                with gate:
                    seen.append(host.plugins["shout"].obj("a"))

        thread = threading.Thread(target=worker)
        thread.start()
        try:
            for round_ in range(20):
                if round_ % 2:
                    accepting.clear()
                    with pytest.raises(PluginCheckError):
                        host.reload("shout")
                    accepting.set()
                else:
                    host.reload("shout")
        finally:
            stop.set()
            thread.join(timeout=10)

        assert not thread.is_alive()
        assert seen
        assert {"A"} == set(seen)
        assert 11 == host["shout"].version
