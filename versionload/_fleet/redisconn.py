"""
Connecting to Redis: the only module of the wing that imports the ``redis`` client.

URLs are the client's own (``redis://``, ``rediss://`` for TLS, ``unix://``), with an
optional ACL user and password (``redis://user:secret@host:6379/0``). Anything shown to
a person (errors, events, reprs) uses `redact_url`, never the URL itself.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from .._errors import InvalidArgumentError
from .errors import FleetConnectionError, FleetUnavailableError

if TYPE_CHECKING:
    import redis

#: Seconds to wait for a connection or an answer before calling Redis unreachable.
CONNECT_TIMEOUT = 5.0

_SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """
    ``url`` with its password replaced by ``***`` (the user, host, port and database stay).
    """
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None and "@" not in parts.netloc:
            # Joined by hand: urlunsplit drops the "//" of an empty host ("unix:///run/r.sock").
            return f"{parts.scheme}://{parts.netloc}{parts.path}"
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        netloc = f"{user}:***@{host}{port}" if parts.password is not None else f"{user}@{host}{port}"
        return f"{parts.scheme}://{netloc}{parts.path}"
    except ValueError:
        return "<unparsable redis url>"


def check_url(url: object) -> str:
    """
    Check that ``url`` is a Redis URL.

    Raises:
        InvalidArgumentError: it is not a string, or its scheme is not one Redis speaks.
    """
    if not isinstance(url, str):
        raise InvalidArgumentError(f"the Redis URL must be a string, got {type(url).__name__}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise InvalidArgumentError(
            f"not a Redis URL: {redact_url(url)!r} (expected redis://, rediss:// or unix://)"
        )
    # What the client would only find when it connects (a port out of range, a database
    # that is not a number, an unclosed IPv6 bracket) is a bad argument, found here.
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - reading it is the check
    except ValueError as error:
        raise InvalidArgumentError(f"not a Redis URL: {redact_url(url)!r} ({error})") from None
    database = parts.path.lstrip("/")
    if scheme != "unix" and database and not database.isdigit():
        raise InvalidArgumentError(
            f"not a Redis URL: {redact_url(url)!r} (the database must be a number, got {database!r})"
        )
    return url


def redis_module() -> Any:
    """
    The ``redis`` client package.

    Raises:
        FleetUnavailableError: it is not installed.
    """
    try:
        import redis
    except ImportError:
        raise FleetUnavailableError(
            "versionload.fleet needs the redis client: pip install 'versionload[fleet]'"
        ) from None
    return redis


def connect(url: str, *, group: str | None = None) -> redis.Redis:
    """
    A client for ``url`` that has answered a PING.

    Raises:
        FleetConnectionError: the server cannot be reached or refused us (bad password).
    """
    client_module = redis_module()
    # TCP keepalive only for TCP: the client's unix-socket connections refuse the option.
    keepalive = {} if url.lower().startswith("unix://") else {"socket_keepalive": True}
    try:
        client = client_module.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, decode_responses=False, **keepalive
        )
    except ValueError as error:  # an option in the URL's query the client cannot read
        raise InvalidArgumentError(f"not a Redis URL: {redact_url(url)!r} ({error})") from None
    try:
        client.ping()
    except client_module.RedisError as error:
        client.close()
        raise connection_lost(url, error, group=group) from None
    return client  # type: ignore[no-any-return]


def connection_lost(url: str, error: BaseException, *, group: str | None = None) -> FleetConnectionError:
    """
    The error to raise for a Redis error: the redacted URL and the error's kind and text.
    """
    if isinstance(error, FleetConnectionError):
        return error  # already says which server failed, and why
    text = str(error).replace(url, redact_url(url))
    return FleetConnectionError(
        f"Redis at {redact_url(url)} failed: {type(error).__name__}: {text}", group=group
    )


def is_connection_error(error: BaseException) -> bool:
    """
    Whether ``error`` means the connection to Redis is gone (as opposed to a bad command).
    """
    try:
        import redis
    except ImportError:
        return False
    return isinstance(error, (redis.ConnectionError, redis.TimeoutError, OSError))
