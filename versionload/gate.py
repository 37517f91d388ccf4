"""
Middleware that makes every request a section of the drain gate (``versionload.serving()``).

    from versionload import gate

    app = gate.wsgi(app)    # Flask, Django, any WSGI application
    app = gate.asgi(app)    # Starlette, FastAPI, any ASGI application

A reload, rollback or cascade then waits until the requests in flight have answered,
holds new requests back while it applies, and lets them go: no request sees a module
half-executed, or two versions of it. See ``docs/gate.md``.

This submodule is imported only when used: ``import versionload`` does not load it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

from ._errors import InvalidArgumentError
from ._gate import Section
from ._tracker import Tracker

__all__ = ["asgi", "wsgi"]

#: ``start_response(status, headers, exc_info=None)`` of PEP 3333.
StartResponse = Callable[..., Any]
#: A WSGI application.
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
#: An ASGI 3 application.
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


def _section(app: object, tracker: Tracker | None) -> Section:
    if not callable(app):
        raise InvalidArgumentError(f"app must be a WSGI or ASGI application (callable), got {app!r}")
    if tracker is None:
        from ._tracker import default_tracker

        tracker = default_tracker()
    if not isinstance(tracker, Tracker):
        raise InvalidArgumentError(f"tracker must be a versionload.Tracker, got {tracker!r}")
    return tracker.serving()


class _Response:
    """
    A WSGI response iterable whose ``close()`` ends the request's section.
    """

    __slots__ = ("_body", "_leave")

    def __init__(self, body: Iterable[bytes], leave: Callable[[], None]) -> None:
        self._body = body
        self._leave: Callable[[], None] | None = leave

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            leave, self._leave = self._leave, None
            if leave is not None:
                leave()


def wsgi(app: WSGIApp, *, tracker: Tracker | None = None) -> WSGIApp:
    """
    Wrap a WSGI application so that each request is a section of ``tracker``'s gate.

    The section lasts until the server closes the response iterable (PEP 3333
    servers do so in the thread that called the application), so a streamed body
    is produced by one version of the code too.

    Args:
        app: The WSGI application.
        tracker: Whose reloads wait for the requests; None means the default tracker.

    Returns:
        The wrapped application.

    Raises:
        InvalidArgumentError: ``app`` is not callable, or ``tracker`` is not a `Tracker`.

    .. versionadded:: 0.1.0
    """
    section = _section(app, tracker)
    enter = section.__enter__

    def leave() -> None:
        section.__exit__(None, None, None)

    def gated(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        enter()
        try:
            body = app(environ, start_response)
        except BaseException:
            leave()
            raise
        return _Response(body, leave)

    gated.__wrapped__ = app  # type: ignore[attr-defined]
    return gated


def asgi(app: ASGIApp, *, tracker: Tracker | None = None) -> ASGIApp:
    """
    Wrap an ASGI application so that each HTTP request is a section of ``tracker``'s gate.

    A request that arrives while a reload waits or applies awaits at the gate
    without blocking the event loop. A reload made on the loop's own thread (from
    a handler) does not wait for the loop's other requests: they are suspended at
    an ``await`` while it runs. Lifespan events and WebSocket connections are not
    sections: a connection that stays open would hold every reload back.

    Args:
        app: The ASGI 3 application.
        tracker: Whose reloads wait for the requests; None means the default tracker.

    Returns:
        The wrapped application.

    Raises:
        InvalidArgumentError: ``app`` is not callable, or ``tracker`` is not a `Tracker`.

    .. versionadded:: 0.1.0
    """
    section = _section(app, tracker)

    async def gated(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        async with section:
            await app(scope, receive, send)

    gated.__wrapped__ = app  # type: ignore[attr-defined]
    return gated
