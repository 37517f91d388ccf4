"""
A host application that upgrades its plugins while it serves requests.

The two plugins in ``plugins/`` are real distributions, installed in editable mode
(``python3 dev.py plugins`` does it; by hand, in a virtual environment: ``pip install -e .
-e examples/plugin_host/plugins/greeter -e examples/plugin_host/plugins/wordcount``).
The host finds them through their ``plugin_host_demo.plugins`` entry points, serves
requests from a background thread, and meanwhile deploys new code into the plugins' checkouts:

1. greeter 2.0 passes the host's check and replaces 1.0 without a restart;
2. wordcount 2.0 breaks the host's contract (it returns a number), so the host puts
   1.0 back at once and the worker never sees the broken version.

The script puts the plugins' 1.0 files back when it starts and when it ends. Run it with::

    .venv/bin/python examples/plugin_host/host.py
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import importlib_metadata
import structlog

import versionload
from versionload import Event
from versionload.plugins import Plugin, PluginCheckError, PluginEvent, PluginHost

HERE = Path(__file__).resolve().parent
GROUP = "plugin_host_demo.plugins"
CHECKOUTS = {
    "greeter": HERE / "plugins" / "greeter" / "vl_demo_greeter",
    "wordcount": HERE / "plugins" / "wordcount" / "vl_demo_wordcount",
}


def contract(plugin: Any) -> bool:
    """
    The host's check: a plugin's ``handle`` must answer a string.
    """
    return isinstance(plugin.handle("hello world"), str)


class App:
    """
    Serves each request with every plugin, each request one section of the drain gate.
    """

    def __init__(self) -> None:
        self.host = PluginHost(GROUP, check=contract)
        self.served = 0
        self.errors: list[str] = []
        self.host.on("after_reload", self.changed)
        self.host.on("after_rollback", self.changed)

    def changed(self, old: Plugin, new: Plugin) -> None:
        if new is not old:
            print(f"  [host] {new.name}: v{old.version} -> v{new.version}")

    def serve(self, text: str) -> dict[str, Any]:
        # A request is one section: a plugin reload waits for the requests in flight and
        # holds new ones back until it is done (or rolled back), so a request never sees
        # a plugin half-reloaded. (``host.using(name)`` is the same for one plugin.)
        with self.host.tracker.serving():
            self.served += 1
            return {name: plugin.obj.handle(text) for name, plugin in self.host.plugins.items()}

    def worker(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                answers = self.serve("worker request")
            except Exception as error:  # noqa: BLE001 - counted, and the demo fails
                self.errors.append(repr(error))
                continue
            self.errors.extend(
                f"{name}: {answer!r}" for name, answer in answers.items() if not isinstance(answer, str)
            )
            stop.wait(0.001)


def print_plugin_event(event: Event) -> None:
    """
    Show the plugin events (every event also goes to structlog, silenced in this demo).
    """
    if isinstance(event, PluginEvent) and event.event != "plugin.discovered":
        versions = dict(zip(event.modules, event.versions, strict=True))
        print(f"  [event] {event.event} {event.plugin} {versions}")


def show(answers: dict[str, Any]) -> None:
    for name, answer in answers.items():
        print(f"  {name}: {answer}")


def deploy(plugin: str, version: str) -> None:
    """
    Copy the files of ``upgrades/<plugin>-<version>/`` into the plugin's checkout.
    """
    for source in sorted((HERE / "upgrades" / f"{plugin}-{version}").glob("*.py")):
        shutil.copyfile(source, CHECKOUTS[plugin] / source.name)


def main() -> int:
    found = {ep.name for ep in importlib_metadata.entry_points(group=GROUP)}
    if not {"greeter", "wordcount"} <= found:
        print("the example plugins are not installed; run: python3 dev.py test (or see host.py's docstring)")
        return 2
    # Keep the demo's output short: the events are printed by print_plugin_event.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    versionload.install(include=["vl_demo_*"]).subscribe(print_plugin_event)
    # Start from version 1.0 even if an earlier run was killed half-way.
    deploy("greeter", "1.0")
    deploy("wordcount", "1.0")
    app = App()
    stop = threading.Event()
    try:
        plugins = app.host.load_all()
        for name, plugin in plugins.items():
            source = f"{plugin.distribution} {plugin.dist_version}"
            print(f"loaded {name} from {source}: modules {list(plugin.modules)}")
        show(app.serve("Ada"))

        worker = threading.Thread(target=app.worker, args=(stop,), daemon=True)
        worker.start()

        print("\ndeploying greeter 2.0 ...")
        deploy("greeter", "2.0")
        app.host.reload("greeter")
        show(app.serve("Ada"))

        print("\ndeploying wordcount 2.0 ...")
        deploy("wordcount", "2.0")
        try:
            app.host.reload("wordcount")
        except PluginCheckError as error:
            print(f"  [host] rejected: {error}")
        show(app.serve("Ada"))

        print("\ngreeter's history:")
        for version in app.host.history("greeter"):
            print(f"  v{version.number} {version.reason:<6} modules {dict(version.modules)}")
        print("\nrolling greeter back ...")
        app.host.rollback("greeter")
        show(app.serve("Ada"))
    finally:
        stop.set()
        deploy("greeter", "1.0")
        deploy("wordcount", "1.0")
    print(f"\nthe worker served {app.served} requests meanwhile; failures: {len(app.errors)}")
    return 1 if app.errors else 0


if __name__ == "__main__":
    sys.exit(main())
