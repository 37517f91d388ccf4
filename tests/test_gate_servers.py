"""
The drain gate under real servers: a threaded werkzeug (Flask) server and uvicorn,
with client threads on 127.0.0.1 while the handler module is edited and reloaded.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import versionload
from versionload import gate

from .helpers import ModuleTree, wait_for

flask = pytest.importorskip("flask")
werkzeug_serving = pytest.importorskip("werkzeug.serving")
uvicorn = pytest.importorskip("uvicorn")

CLIENTS = 4
MAX_REQUESTS = 20_000  # per client thread, a bound should the stop signal be lost

# The handler module: two values bound at different lines, a pause between them (a
# module that takes a while to run), and a helper defined further down the file.
_HANDLER = """
import time

A = {value}
time.sleep({pause})
B = {value}


def answer():
    return f"{{A}},{{B}},{{helper()}}"


def helper():
    return {value}
"""

_SYNTAX_ERROR = "A = 9\ndef answer(:\n"
_FAILS_HALF_WAY = """
import time

A = 3
time.sleep({pause})
raise RuntimeError("the new version fails half-way")
"""


class _Clients:
    """
    Client threads requesting ``/`` until stopped, recording every answer.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[str] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]
        for each in self.threads:
            each.start()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        for _ in range(MAX_REQUESTS):
            if self.stop.is_set():
                break
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read().decode()
                outcome = (response.status, body)
            except (OSError, http.client.HTTPException) as error:
                outcome = (0, repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            with self.lock:
                if outcome[0] == 200:
                    self.answers.append(outcome[1])
                else:
                    self.errors.append(f"{outcome[0]} {outcome[1][:200]}")
        connection.close()

    def latest(self) -> str | None:
        with self.lock:
            return self.answers[-1] if self.answers else None

    def finish(self) -> None:
        self.stop.set()
        for each in self.threads:
            each.join(15)

    def mixed(self) -> list[str]:
        return [answer for answer in self.answers if len(set(answer.split(","))) != 1]

    def values(self) -> set[str]:
        return {answer.split(",")[0] for answer in self.answers}


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _edit_under_load(
    tree: ModuleTree, port: int, reload: Callable[[], object], pause: float, rollback_path: str
) -> _Clients:
    """
    Edit the handler several times while clients request: good edits, a syntax error,
    an edit that fails half-way, a fix, a rollback through the server, a last edit.
    """
    clients = _Clients(port)
    try:
        assert wait_for(lambda: clients.latest() == "1,1,1")
        steps: list[tuple[str, str | None]] = [
            (_HANDLER.format(value=2, pause=pause), "2,2,2"),
            (_SYNTAX_ERROR, None),
            (_FAILS_HALF_WAY.format(pause=pause), None),
            (_HANDLER.format(value=4, pause=pause), "4,4,4"),
        ]
        for source, expected in steps:
            tree.module("gs_handler", source)
            if expected is None:
                with pytest.raises(versionload.ReloadError):
                    reload()
            else:
                reload()
                assert wait_for(lambda: clients.latest() == expected)  # noqa: B023 - waited for at once
        assert (200, "rolled back to 2") == _get(port, rollback_path)
        assert wait_for(lambda: clients.latest() == "2,2,2")
        tree.module("gs_handler", _HANDLER.format(value=5, pause=pause))
        reload()
        assert wait_for(lambda: clients.latest() == "5,5,5")
    finally:
        clients.finish()
    return clients


# -- WSGI (werkzeug's threaded server, Flask) ---------------------------------------------


def _flask_app(tracker: versionload.Tracker) -> Any:
    import gs_handler

    app = flask.Flask("gs_app")

    @app.route("/")
    def index() -> str:
        return str(gs_handler.answer())

    @app.route("/rollback")
    def rollback() -> str:
        # Inside the request's own section: waits for the other requests only.
        tracker.rollback(gs_handler, 2)
        return "rolled back to 2"

    return app


@pytest.fixture(name="wsgi_server")
def _wsgi_server() -> Iterator[Callable[[Any], int]]:
    """
    Serve a WSGI app with werkzeug's threaded server on 127.0.0.1; returns the port.
    """
    servers: list[Any] = []

    def serve(app: Any) -> int:
        server = werkzeug_serving.make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return int(server.server_port)

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(10)


class TestWSGIGate:
    """
    `versionload.gate.wsgi` under werkzeug's threaded server.
    """

    def test_no_errors_and_no_mixed_answers_with_the_gate(
        self,
        tree: ModuleTree,
        tracker: versionload.Tracker,
        wsgi_server: Callable[[Any], int],
        bytecode: bool,
    ) -> None:
        """
        Every request answers with one whole version while the handler is edited, broken, fixed, rolled back.
        """
        tree.module("gs_handler", _HANDLER.format(value=1, pause=0.02))
        import gs_handler

        port = wsgi_server(gate.wsgi(_flask_app(tracker), tracker=tracker))
        clients = _edit_under_load(
            tree, port, lambda: tracker.reload(gs_handler, prune=True), 0.02, "/rollback"
        )

        assert ([], []) == (clients.errors, clients.mixed())
        assert {"1", "2", "4", "5"} == clients.values()

    def test_without_the_gate_requests_see_half_run_modules(
        self, tree: ModuleTree, tracker: versionload.Tracker, wsgi_server: Callable[[Any], int]
    ) -> None:
        """
        The same server without the gate answers with mixed versions (or fails) while a slow module reloads.
        """
        tree.module("gs_handler", _HANDLER.format(value=1, pause=0.1))
        import gs_handler

        port = wsgi_server(_flask_app(tracker))
        clients = _Clients(port)
        try:
            assert wait_for(lambda: clients.latest() == "1,1,1")
            for value in range(2, 22):
                tree.module("gs_handler", _HANDLER.format(value=value, pause=0.1))
                tracker.reload(gs_handler, prune=True)
                if clients.mixed() or clients.errors:
                    break
        finally:
            clients.finish()

        assert clients.mixed() or clients.errors

    def test_the_section_lasts_until_the_response_is_closed(self, tracker: versionload.Tracker) -> None:
        """
        A streamed body is produced inside the request's section; closing the response ends it.
        """
        seen: list[int] = []

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
            start_response("200 OK", [])
            seen.append(tracker.sections_in_flight)
            yield b"a"
            seen.append(tracker.sections_in_flight)

        response = gate.wsgi(app, tracker=tracker)({}, lambda *args: None)
        body = b"".join(response)
        before_close = tracker.sections_in_flight
        response.close()  # type: ignore[attr-defined]

        assert (b"a", [1, 1], 1, 0) == (body, seen, before_close, tracker.sections_in_flight)

    def test_an_app_that_raises_ends_its_section(self, tracker: versionload.Tracker) -> None:
        """
        An exception from the application ends the request's section.
        """

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            gate.wsgi(app, tracker=tracker)({}, lambda *args: None)

        assert 0 == tracker.sections_in_flight

    @pytest.mark.parametrize("bad", [{"app": 42}, {"app": lambda e, s: [], "tracker": "default"}])
    def test_bad_arguments(self, bad: dict[str, Any]) -> None:
        """
        A non-callable app or a tracker that is not a `Tracker` raises `InvalidArgumentError`.
        """
        for wrap in (gate.wsgi, gate.asgi):
            with pytest.raises(versionload.InvalidArgumentError):
                wrap(**bad)


# -- ASGI (uvicorn) -------------------------------------------------------------------------


def _asgi_app(tracker: versionload.Tracker) -> Any:
    import gs_handler

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/rollback":
            # On the event loop's thread, inside this request's section, while other
            # requests of the same loop are in theirs: must not deadlock.
            tracker.rollback(gs_handler, 2)
            body = "rolled back to 2"
        else:
            await asyncio.sleep(0)
            body = gs_handler.answer()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": body.encode()})

    return app


@pytest.fixture(name="asgi_server")
def _asgi_server() -> Iterator[Callable[[Any], int]]:
    """
    Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; returns the port.
    """
    servers: list[Any] = []

    def serve(app: Any) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread, sock))
        assert wait_for(lambda: server.started)
        return int(sock.getsockname()[1])

    yield serve
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(10)
        sock.close()


class TestASGIGate:
    """
    `versionload.gate.asgi` under uvicorn.
    """

    def test_no_errors_and_no_mixed_answers_with_the_gate(
        self,
        tree: ModuleTree,
        tracker: versionload.Tracker,
        asgi_server: Callable[[Any], int],
        bytecode: bool,
    ) -> None:
        """
        Every request answers with one whole version; a rollback made on the loop's thread does not deadlock.
        """
        tracker.drain_timeout = 20
        tree.module("gs_handler", _HANDLER.format(value=1, pause=0.02))
        import gs_handler

        port = asgi_server(gate.asgi(_asgi_app(tracker), tracker=tracker))
        clients = _edit_under_load(
            tree, port, lambda: tracker.reload(gs_handler, prune=True), 0.02, "/rollback"
        )

        assert ([], []) == (clients.errors, clients.mixed())
        assert {"1", "2", "4", "5"} == clients.values()

    def test_without_the_gate_requests_see_half_run_modules(
        self, tree: ModuleTree, tracker: versionload.Tracker, asgi_server: Callable[[Any], int]
    ) -> None:
        """
        The same server without the gate answers with mixed versions (or fails) while a slow module reloads.
        """
        tree.module("gs_handler", _HANDLER.format(value=1, pause=0.1))
        import gs_handler

        port = asgi_server(_asgi_app(tracker))
        clients = _Clients(port)
        try:
            assert wait_for(lambda: clients.latest() == "1,1,1")
            for value in range(2, 22):
                tree.module("gs_handler", _HANDLER.format(value=value, pause=0.1))
                tracker.reload(gs_handler, prune=True)
                if clients.mixed() or clients.errors:
                    break
        finally:
            clients.finish()

        assert clients.mixed() or clients.errors

    def test_lifespan_and_websocket_scopes_are_not_sections(self, tracker: versionload.Tracker) -> None:
        """
        Only HTTP requests are sections.
        """
        seen: list[tuple[str, int]] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.append((scope["type"], tracker.sections_in_flight))

        gated = gate.asgi(app, tracker=tracker)

        async def main() -> None:
            for kind in ("lifespan", "websocket", "http"):
                await gated({"type": kind}, None, None)

        asyncio.run(main())

        assert [("lifespan", 0), ("websocket", 0), ("http", 1)] == seen


def test_gate_submodule_is_reachable_from_the_facade() -> None:
    """
    ``versionload.gate`` is the middleware submodule, also as an attribute.
    """
    assert (gate, ["asgi", "wsgi"]) == (versionload.gate, sorted(sys.modules["versionload.gate"].__all__))
