"""
Compiling the code a reload runs, always from the current source on disk.

``SourceLoader.get_code`` trusts a ``.pyc`` whose recorded source mtime (whole
seconds) and size match the source file. An edit that keeps the size and lands in
the same second as the cached bytecode passes that check, and ``importlib.reload``
runs the old code again. For loaders that would take that path, a reload here reads
and compiles the source bytes itself, hashes exactly those bytes, and rewrites the
stale cache so that later imports in any process see the new code too.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import marshal
import sys
from importlib._bootstrap_external import SourceLoader as _SourceLoaderBase
from types import CodeType
from typing import Any

import attrs

from ._snapshot import sha256_of

_TIMESTAMP_PYC_FLAGS = (0).to_bytes(4, "little")


@attrs.frozen
class FreshCode:
    """
    What a reload will execute: compiled ``code`` from ``path``, or, when ``code``
    is None, whatever the loader's own ``exec_module`` runs.
    """

    code: CodeType | None
    sha256: str | None
    path: str | None


def reads_source_through_cache(loader: object) -> bool:
    """
    Whether ``loader`` gets its code from ``SourceLoader.get_code`` unchanged, the
    path that can run stale bytecode; a loader that overrides it keeps its own logic.
    """
    cls = type(loader)
    return (
        isinstance(loader, _SourceLoaderBase)
        and getattr(cls, "get_code", None) is _SourceLoaderBase.get_code
        and getattr(cls, "exec_module", None) is _SourceLoaderBase.exec_module
    )


def fresh_code(spec: importlib.machinery.ModuleSpec) -> FreshCode:
    """
    Compile the module's current source, bypassing the bytecode cache.

    Raises whatever reading or compiling raises (``OSError``, ``SyntaxError``,
    ``ValueError`` for null bytes); the caller turns that into a ``ReloadError``.
    """
    loader: Any = spec.loader
    if not reads_source_through_cache(loader):
        return FreshCode(code=None, sha256=None, path=spec.origin if spec.has_location else None)
    path = loader.get_filename(spec.name)
    # Stat before reading, as the stdlib does: if the file changes in between, the
    # cache we write records the older mtime and the next import recompiles.
    try:
        stats = loader.path_stats(path)
    except OSError:
        stats = None
    data = loader.get_data(path)
    code = loader.source_to_code(data, path)
    if stats is not None:
        _refresh_bytecode_cache(loader, path, code, int(stats["mtime"]), len(data))
    return FreshCode(code=code, sha256=sha256_of(data), path=path)


def _refresh_bytecode_cache(
    loader: Any, source_path: str, code: CodeType, mtime: int, size: int
) -> None:
    if sys.dont_write_bytecode:
        return
    try:
        cache_path = importlib.util.cache_from_source(source_path)
    except NotImplementedError:
        return
    try:
        with open(cache_path, "rb") as existing:
            header = existing.read(8)
        if len(header) == 8 and header[4:8] != _TIMESTAMP_PYC_FLAGS:
            return  # a hash-based cache was chosen deliberately; leave it alone
    except OSError:
        pass
    payload = b"".join(
        (
            importlib.util.MAGIC_NUMBER,
            _TIMESTAMP_PYC_FLAGS,
            (mtime & 0xFFFFFFFF).to_bytes(4, "little"),
            (size & 0xFFFFFFFF).to_bytes(4, "little"),
            marshal.dumps(code),
        )
    )
    # An unwritable cache only costs later imports a recompile.
    with contextlib.suppress(OSError, NotImplementedError):
        loader.set_data(cache_path, payload)
