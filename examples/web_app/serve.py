"""
A small threaded WSGI app served through ``versionload.gate``.

Run it under live reloading, then edit ``handlers.py``::

    versionload run --prune --watch examples/web_app examples/web_app/serve.py 8000
    curl http://127.0.0.1:8000/

Every request is a section of the drain gate: a reload waits until the requests in
flight have answered and holds new ones back while it runs, so each answer comes
from one whole version of ``handlers``. ``demo.py`` drives this under load.
"""

# no-run: serves until stopped; tests/test_docs.py runs demo.py, which drives this script.

from __future__ import annotations

import socketserver
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import handlers

from versionload import gate


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = handlers.answer().encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(port: int) -> None:
    server = make_server(
        "127.0.0.1", port, gate.wsgi(application), server_class=ThreadingServer, handler_class=QuietHandler
    )
    print(f"serving on http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
