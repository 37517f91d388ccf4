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

import _imp
import importlib.machinery
import importlib.util
import io
import marshal
import os
import struct
import sys
import weakref
from importlib._bootstrap_external import SourceLoader as _SourceLoaderBase
from types import CodeType, ModuleType
from typing import Any, TypeAlias

import attrs

from ._snapshot import (
    StatKey,
    _SourceDigest,
    bytecode_matches,
    compiled_caches,
    file_identity,
    header_holds,
    sha256_of,
    stat_key,
    timestamp_margin,
)

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


#: The compile cache holds the code of at most this many source files, compiled from
#: at most this many bytes of source in all; the least recently used go first.
COMPILE_CACHE_MAX_ENTRIES = 128
COMPILE_CACHE_MAX_SOURCE_BYTES = 8 * 1024 * 1024


@attrs.frozen
class _Compiled:
    """
    The code last compiled from one source path, and what it was compiled from.
    """

    sha256: str
    code: CodeType
    size: int
    #: The module whose reload compiled it; the entry goes when that module is collected.
    module_name: str | None
    owner: weakref.ref[ModuleType] | None


#: The code last compiled for each source path, with the sha256 of exactly the bytes it
#: was compiled from. Compiling is a pure function of the bytes, the path and the
#: interpreter's flags, so equal bytes at the same path give equal code: a reload of
#: unchanged source runs the code object compiled before instead of compiling again.
#: One entry per module file, replaced on each edit, in least-recently-used order,
#: bounded as above, and dropped when its module's history ends (`forget_compiled`) or
#: the module is collected. Plain dict operations, each atomic, so no lock: a race
#: between two of them costs at most a compile.
_compiled: dict[str, _Compiled] = {}
#: For each bytecode cache this process wrote, or proved to hold a source: the sha256 of
#: the source it holds, the (mtime, size) in its header, and the cache file's (inode,
#: size, mtime_ns) then. While all of these still hold, rewriting it would write the same bytes.
_written: dict[str, tuple[str, int, int, tuple[int, int, int]]] = {}


@attrs.frozen
class SourceRead:
    """
    The source bytes a reload is about to compile, and what is needed to compile them.
    """

    loader: Any
    path: str
    data: bytes
    sha256: str
    mtime: int | None
    #: The source's `stat_key`, the same before and after the read (so ``data`` is the
    #: file as it had it), or None when that is not known.
    stat: StatKey | None = None


def read_source(spec: importlib.machinery.ModuleSpec) -> SourceRead | None:
    """
    Read the module's current source, for loaders whose cache check can run stale
    bytecode; None for every other loader (its own ``exec_module`` runs).

    Raises what reading raises (``OSError``); the caller turns that into a ``ReloadError``.
    """
    loader: Any = spec.loader
    if not reads_source_through_cache(loader):
        return None
    path = loader.get_filename(spec.name)
    if _reads_files_as_stdlib(loader):
        return _read_as_stdlib(loader, path)
    # Stat before reading, as the stdlib does: if the file changes in between, the
    # cache we write records the older mtime and the next import recompiles.
    try:
        before: StatKey | None = stat_key(os.stat(path))
    except OSError:
        before = None
    try:
        mtime: int | None = int(loader.path_stats(path)["mtime"])
    except OSError:
        mtime = None
    data = loader.get_data(path)
    try:
        after: StatKey | None = stat_key(os.stat(path))
    except OSError:
        after = None
    stat = before if before is not None and before == after and before[1] == len(data) else None
    return SourceRead(loader=loader, path=path, data=data, sha256=sha256_of(data), mtime=mtime, stat=stat)


def _read_as_stdlib(loader: Any, path: str) -> SourceRead:
    """
    What the stdlib's ``get_data`` and ``path_stats`` would give, from one open file.

    The file's stat before and after the read, taken on the open file itself, say
    that the bytes are the file as it had that stat (a file replaced meanwhile by a
    rename is not the one read); two path lookups fewer than stat, read, stat.
    """
    with io.open_code(path) as file:
        before = os.fstat(file.fileno())
        data = file.read()
        after = os.fstat(file.fileno())
    key = stat_key(before)
    stat = key if key == stat_key(after) and before.st_size == len(data) else None
    # As path_stats and get_code compute it: the cache header's mtime.
    mtime = int(before.st_mtime)
    return SourceRead(loader=loader, path=path, data=data, sha256=sha256_of(data), mtime=mtime, stat=stat)


def compile_source(spec: importlib.machinery.ModuleSpec, source: SourceRead | None) -> FreshCode:
    """
    Compile what `read_source` read, bypassing the bytecode cache, and replace a
    cache that would pass the loader's check for this source without holding it.

    Raises what compiling raises (``SyntaxError``, ``ValueError`` for null bytes).
    """
    if source is None:
        return FreshCode(code=None, sha256=None, path=spec.origin if spec.has_location else None)
    loader, path, data, sha256 = source.loader, source.path, source.data, source.sha256
    cached = _cache_path(spec, path)
    # Only the header, as the loader's own check reads it: the whole file is read only
    # when the header says it may hold this source.
    header = _cache_header(cached)
    if (
        source.stat is not None
        and header is not None
        and _passes_check(header, source.stat[0] // 1_000_000_000, len(data))
        and _reads_files_as_stdlib(loader)
        and _compiled_for(path, sha256) is None
    ):
        # The first reload of an unchanged module: a bytecode cache proven to hold
        # exactly these bytes serves it, as the import did, instead of a compile.
        assert cached is not None
        from_cache = _code_from_proven_cache(cached, path, data, sha256, source.stat)
        if from_cache is not None:
            entry = _Compiled(sha256, from_cache, len(data), spec.name, _owner_ref(spec.name, path))
            _remember_compiled(path, entry)
            return FreshCode(code=from_cache, sha256=sha256, path=path)
    code = _compile(loader, path, data, sha256, spec.name)
    if (
        source.mtime is not None
        and cached is not None
        and header is not None
        and _passes_check(header, source.mtime, len(data))
    ):
        # Only a cache that the loader would run for this source can run stale code.
        # One that fails its check (the usual edit: a new mtime or size), or none at
        # all, makes the next import compile the source and write the cache itself,
        # as a first import does; rewriting it here would only repeat that work.
        _refresh_bytecode_cache(loader, cached, code, source.mtime, len(data), sha256)
    return FreshCode(code=code, sha256=sha256, path=path)


def _cache_path(spec: importlib.machinery.ModuleSpec, path: str) -> str | None:
    """
    Where the bytecode cache of ``path`` lives, or None when there is none.
    """
    try:
        # The spec computes it once, and the module's __cached__ needs it anyway.
        return spec.cached if spec.origin == path else importlib.util.cache_from_source(path)
    except NotImplementedError:
        return None


def _cache_header(cached: str | None) -> bytes | None:
    """
    The first 16 bytes of the bytecode cache at ``cached`` (fewer if it is shorter),
    or None when there is no readable cache.
    """
    if cached is None:
        return None
    try:
        fd = os.open(cached, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 16)
    except OSError:
        return None
    finally:
        os.close(fd)


def _passes_check(header: bytes, mtime: int, size: int) -> bool:
    """
    Whether the stdlib's loader would run a timestamp cache with this ``header`` for a
    source of whole-second ``mtime`` and ``size`` without compiling.
    """
    return (
        len(header) == 16
        and header[:4] == importlib.util.MAGIC_NUMBER
        and header[4:8] == _TIMESTAMP_PYC_FLAGS
        and header[8:16]
        == (mtime & 0xFFFFFFFF).to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")
    )


def _reads_files_as_stdlib(loader: Any) -> bool:
    cls = type(loader)
    return (
        getattr(cls, "source_to_code", None) is _SourceLoaderBase.source_to_code
        and getattr(cls, "get_data", None) is importlib.machinery.SourceFileLoader.get_data
        and getattr(cls, "path_stats", None) is importlib.machinery.SourceFileLoader.path_stats
    )


def _compiled_for(path: str, sha256: str) -> CodeType | None:
    known = _compiled.get(path)
    return known.code if known is not None and known.sha256 == sha256 else None


def _code_from_proven_cache(
    cached: str, path: str, data: bytes, sha256: str, stat: StatKey
) -> CodeType | None:
    """
    The code in ``path``'s timestamp bytecode cache if it provably holds ``data`` (whose
    hash is ``sha256``), the source as it was with `stat_key` ``stat``; None when that
    cannot be proven.

    The header must match the source's whole-second mtime and size, and the cache must
    have been written after the source's last change by more than the filesystem's
    timestamp granularity (`_snapshot.bytecode_matches`); within that window, or for
    any other kind of cache, the caller compiles. The stdlib writes the cache as it
    always does; nothing here writes one.
    """
    try:
        with open(cached, "rb") as file:
            blob = file.read()
            cache = os.fstat(file.fileno())
    except (OSError, ValueError):
        return None
    seconds = stat[0] // 1_000_000_000
    expected = (seconds & 0xFFFFFFFF).to_bytes(4, "little") + (len(data) & 0xFFFFFFFF).to_bytes(4, "little")
    if (
        len(blob) < 16
        or blob[:4] != importlib.util.MAGIC_NUMBER
        or blob[4:8] != _TIMESTAMP_PYC_FLAGS
        or blob[8:16] != expected
        or not bytecode_matches((cached, file_identity(cache), seconds), stat, data)
    ):
        return None
    try:
        code = marshal.loads(blob[16:])
    except (EOFError, ValueError, TypeError):
        return None
    if not isinstance(code, CodeType):
        return None
    # As the stdlib's loader does: the code names the file it now runs from.
    _imp._fix_co_filename(code, path)  # type: ignore[attr-defined]
    # The cache holds exactly this source: later reloads need not rewrite it.
    _written[cached] = (sha256, seconds, len(data), (cache.st_ino, cache.st_size, cache.st_mtime_ns))
    return code


def _compile(loader: Any, path: str, data: bytes, sha256: str, name: str) -> CodeType:
    # Only the stdlib's own compile step is known to depend on nothing but the bytes;
    # a loader that transforms source in source_to_code may consult other state.
    pure = getattr(type(loader), "source_to_code", None) is _SourceLoaderBase.source_to_code
    if pure:
        known = _compiled.pop(path, None)
        if known is not None and known.sha256 == sha256:
            _compiled[path] = known  # now the most recently used
            return known.code
    code: CodeType = loader.source_to_code(data, path)
    if pure:
        _remember_compiled(path, _Compiled(sha256, code, len(data), name, _owner_ref(name, path)))
    return code


def _owner_ref(name: str, path: str) -> weakref.ref[ModuleType] | None:
    module = sys.modules.get(name)
    if not isinstance(module, ModuleType):
        return None

    def on_collected(ref: weakref.ref[ModuleType]) -> None:
        # Inside the garbage collector: one atomic lookup and one atomic removal.
        entry = _compiled.get(path)
        if entry is not None and entry.owner is ref:
            _compiled.pop(path, None)

    return weakref.ref(module, on_collected)


def _remember_compiled(path: str, entry: _Compiled) -> None:
    if entry.size > COMPILE_CACHE_MAX_SOURCE_BYTES:
        return
    _compiled[path] = entry
    # Oldest first: dicts keep insertion order, and a hit re-inserts its entry.
    while len(_compiled) > COMPILE_CACHE_MAX_ENTRIES or (
        sum(item.size for item in list(_compiled.values())) > COMPILE_CACHE_MAX_SOURCE_BYTES
    ):
        try:
            _compiled.pop(next(iter(list(_compiled))))
        except (KeyError, StopIteration):
            break  # emptied by another thread meanwhile


def forget_compiled(name: str | None = None) -> None:
    """
    Drop the cached code of module ``name`` (all of it when None): its history ended.
    """
    for path, entry in list(_compiled.items()):
        if name is None or entry.module_name == name:
            _compiled.pop(path, None)


def _cache_identity(cache_path: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(cache_path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _refresh_bytecode_cache(
    loader: Any, cache_path: str, code: CodeType, mtime: int, size: int, sha256: str
) -> None:
    """
    Replace the timestamp cache at ``cache_path``, whose header passes the loader's
    check for the source just compiled, with ``code``; a hash-based cache never gets
    here (it was chosen deliberately, and is left alone).
    """
    if sys.dont_write_bytecode:
        return
    written = _written.get(cache_path)
    if (
        written is not None
        and written[:3] == (sha256, mtime, size)
        and written[3] == _cache_identity(cache_path)
    ):
        return  # the cache still holds what we wrote for exactly this source
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
    try:
        loader.set_data(cache_path, payload)
    except (OSError, NotImplementedError):
        return
    # SourceFileLoader.set_data gives up silently on some errors: remember the cache
    # only if the file there now is the one just written.
    identity = _cache_identity(cache_path)
    if identity is None or identity[1] != len(payload):
        return
    try:
        with open(cache_path, "rb") as check:
            if check.read() != payload:
                return
    except OSError:
        return
    if identity == _cache_identity(cache_path):
        _written[cache_path] = (sha256, mtime, size, identity)


def digest_of_loader_run(spec: importlib.machinery.ModuleSpec) -> _SourceDigest | None:
    """
    The digest of what ``spec.loader.exec_module`` is about to run, for a reload that
    another tool runs with ``importlib.reload`` (which versionload leaves as it is).

    Such a reload may run a ``.pyc`` that passes the mtime and size check although the
    source changed. Staleness is decided as the loader decides it, from the cache's
    header: a header that does not match the source makes the loader compile the
    source, and a matching one written well after the source's last change holds it
    (`_snapshot.bytecode_matches`); either way the source's hash is what runs. Only in
    the window where the header cannot tell (the source changed within the cache's
    timestamp granularity and kept its size) is the source compiled and compared with
    the cached code: equal, the source's hash; different, a digest of None. Returns None
    for loaders this cannot check, and when the loader cannot produce its code (its own
    run will fail).
    """
    loader: Any = spec.loader
    if not reads_source_through_cache(loader):
        return None
    try:
        path = loader.get_filename(spec.name)
        if _reads_files_as_stdlib(loader):
            # What get_data reads, with the stat of the very file read, before and after.
            with io.open_code(path) as file:
                before = os.fstat(file.fileno())
                data = file.read()
                after = os.fstat(file.fileno())
        else:
            before = os.stat(path)
            data = loader.get_data(path)
            after = os.stat(path)
    except Exception:  # noqa: BLE001 - unreadable source: what runs is the cache, if anything
        return _cached_code_check(spec, loader, None, None)
    source = stat_key(before)
    if stat_key(after) != source or len(data) != before.st_size:
        return _cached_code_check(spec, loader, path, None)  # written while read: compare code
    sha256 = sha256_of(data)
    cached = _cache_path(spec, path)
    if cached is None:
        return _SourceDigest(sha256)  # no cache to run: the loader compiles the source
    try:
        fd = os.open(cached, os.O_RDONLY)
    except OSError:
        return _SourceDigest(sha256)  # no cache to run: the loader compiles the source
    try:
        header = os.read(fd, 16)
        cache = os.fstat(fd)
    except OSError:
        return _cached_code_check(spec, loader, path, (data, sha256))
    finally:
        os.close(fd)
    # Header and stat come from one open file, so they describe the same cache.
    if header_holds(header, cache, int(before.st_mtime), source, data):
        return _SourceDigest(sha256)
    return _cached_code_check(spec, loader, path, (data, sha256))


def _cached_code_check(
    spec: importlib.machinery.ModuleSpec, loader: Any, path: str | None, source: tuple[bytes, str] | None
) -> _SourceDigest | None:
    """
    What runs when the header cannot tell: the loader's code compared with the source's.
    """
    try:
        running = loader.get_code(spec.name)
    except Exception:  # noqa: BLE001 - exec_module reports the loader's own errors
        return None
    try:
        if path is None:
            path = loader.get_filename(spec.name)
        if source is None:
            data = loader.get_data(path)
            source = (data, sha256_of(data))
        data, sha256 = source
        fresh = _compile(loader, path, data, sha256, spec.name)
    except Exception:  # noqa: BLE001 - unreadable or broken source: what runs is the cache
        return _SourceDigest()
    return _SourceDigest(sha256 if running == fresh else None)


# -- what a first import ran ---------------------------------------------------------------

#: What proves which bytes a first import ran: its digest, or what `LoaderWatch.finish`
#: packed, to make it from (`digest_of_run`) when needed; None when nothing is known.
ImportProof: TypeAlias = "_SourceDigest | bytes | None"
_GET_CODE: CodeType = _SourceLoaderBase.get_code.__code__


class LoaderWatch:
    """
    What the stdlib's source loader reads during one first import, noted as it reads.

    From the start of the watch (`_finder._watch_import` fills the slots and sets the
    two attributes itself, without a method call: it runs for every import) to `finish`
    (the end of the import), the loader's own ``path_stats`` and ``get_data`` attributes
    are this watch's methods, which do exactly what the stdlib's do (3.10 to 3.13) and
    keep the source's stat and whether ``get_code`` read the source (to compile it, or
    to check a hash-based cache against it).
    Nothing is asked of the files that the loader does not ask itself (a stat of the
    cache costs more than all the rest): when the loader ran the cache, the proof
    that it held the source is made when the hash is first wanted, from a cache file
    unchanged since before the import began, or one this process's loader wrote from
    this very source (`_snapshot.bytecode_matches`).

    Instance attributes, not another class: in CPython 3.11 changing an object's class
    turns its attribute storage into a dictionary, which makes every later attribute
    read of it slower. Once the import ended, `finish` packs what it saw.
    """

    __slots__ = ("loader", "read_source", "source_stat", "started_ns")

    loader: Any
    source_stat: os.stat_result | None
    read_source: bool
    started_ns: int

    def finish(self) -> bytes:
        """
        Take the loader's own methods back (once the import ended), and return what it
        saw, packed (see `digest_of_run`): empty when it never looked at the source's
        stat, which proves nothing. Calling it again returns the same.
        """
        loader = self.loader
        if loader is not None:
            self.loader = None
            # Never through loader.__dict__, which would make its attributes a dictionary.
            try:
                del loader.path_stats
                del loader.get_data
            except AttributeError:
                pass  # somebody removed them already
        source = self.source_stat
        if source is None:
            return b""
        return _RUN_PROOF.pack(
            source.st_mtime_ns,
            source.st_size,
            source.st_ctime_ns,
            int(source.st_mtime),
            self.started_ns,
            self.read_source,
        )

    def path_stats(self, path: str) -> dict[str, Any]:
        stat = os.stat(path)
        if self.source_stat is None:
            self.source_stat = stat  # get_code's: the first, before the module's code runs
        return {"mtime": stat.st_mtime, "size": stat.st_size}

    def get_data(self, path: str) -> bytes:
        with io.open_code(str(path)) as file:
            data = file.read()
        # The module's own code may read its file through __loader__ while it runs, or
        # keep this method and call it once the import ended (``loader`` is None then).
        loader = self.loader
        if loader is not None and path == loader.path and sys._getframe(1).f_code is _GET_CODE:
            self.read_source = True
        return data


#: A finished `LoaderWatch` packed into bytes, which the garbage collector never
#: tracks (the queue of first imports holds one per import): the source's st_mtime_ns,
#: st_size and st_ctime_ns as the loader's stat saw them, its whole-second mtime as the
#: loader computed it, when the import began, and whether the loader read the source.
_RUN_PROOF = struct.Struct("<qqqqq?")


def note_cache_written(spec: importlib.machinery.ModuleSpec, watch: LoaderWatch) -> None:
    """
    After a first import that compiled its source with bytecode writing on: remember
    the cache the loader wrote, if it did, as holding that source (see
    `_snapshot.compiled_caches`). A cache whose header names another source, or that
    did not change during the import, is not the loader's.
    """
    source, cached = watch.source_stat, spec.cached
    if source is None or cached is None or not watch.read_source:
        return
    try:
        with open(cached, "rb") as file:
            header = file.read(16)
            cache = os.fstat(file.fileno())
    except OSError:
        return  # the loader could not write it
    expected = _TIMESTAMP_PYC_FLAGS + (int(source.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
    expected += (source.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    if header[:4] != importlib.util.MAGIC_NUMBER or header[4:16] != expected:
        return
    if max(cache.st_mtime_ns, cache.st_ctime_ns) < watch.started_ns - timestamp_margin(cache.st_mtime_ns):
        return
    compiled_caches[cached] = (file_identity(cache), stat_key(source))


def digest_of_run(spec: importlib.machinery.ModuleSpec, proof: bytes) -> _SourceDigest:
    """
    The digest of what a watched first import ran (``proof`` from `LoaderWatch.finish`): the
    source as the loader's own stat saw it when it compiled that source, or, when it
    ran the cache instead, the source as that stat saw it and a cache file that must
    still be the one it read (proved to hold that source when the hash is computed,
    see `_snapshot.bytecode_matches`).
    """
    origin = spec.origin
    if origin is None or not proof:
        return _SourceDigest()
    mtime_ns, size, ctime_ns, seconds, started_ns, read_source = _RUN_PROOF.unpack(proof)
    stat = (mtime_ns, size, ctime_ns)
    if read_source:
        return _SourceDigest(path=origin, stat=stat)
    cached = spec.cached
    if cached is None:
        return _SourceDigest()
    return _SourceDigest(path=origin, stat=stat, bytecode=(cached, started_ns, seconds))


#: What `import_started` notes before the loader runs: the source's `stat_key` and
#: whole-second mtime, the `file_identity` of its bytecode cache (None when there is
#: none), and the loader: one of its own (`_OWN_LOADER`), or the stdlib's source loader,
#: whose cache check is known, while bytecode writing was on (`_WRITING`) or off (`_NOT_WRITING`).
ImportStart = tuple[StatKey, int, "tuple[int, int, int, int] | None", int]
_OWN_LOADER, _WRITING, _NOT_WRITING = 0, 1, 2


def import_started(spec: importlib.machinery.ModuleSpec) -> ImportStart | None:
    """
    Note the state of the module's source and bytecode cache before the import runs
    the loader; None for modules without a Python source file.
    """
    origin = spec.origin
    if not spec.has_location or origin is None or not origin.endswith(".py"):
        return None
    try:
        source = os.stat(origin)
    except OSError:
        return None
    if not reads_source_through_cache(spec.loader):
        return stat_key(source), int(source.st_mtime), None, _OWN_LOADER
    # The import system computes spec.cached for the module's __cached__ anyway.
    loader = _NOT_WRITING if sys.dont_write_bytecode else _WRITING
    return stat_key(source), int(source.st_mtime), _cache_identity_of(spec.cached), loader


def import_digest(spec: importlib.machinery.ModuleSpec, started: ImportStart | None) -> _SourceDigest:
    """
    The digest of what a first import ran, from what `import_started` noted and, when
    it can matter, the bytecode cache now that the import ended.

    Stats are the hook's main cost, so this one is taken only when the cache may have
    changed during the import in a way that tells what ran: when there was no cache
    before, the loader compiled the source whatever is there now, and when bytecode
    writing was off throughout, the loader wrote nothing, so a cache that changed is
    someone else's and the proof against the cache as it was before fails anyway.

    The hash is computed later, when first asked for, and only if the source still has
    the `stat_key` it had before the import (any write since, even one that puts the old
    mtime back, changes ``st_ctime_ns``), and, when the import may have run bytecode, the
    cache is still the same file and shows that it held this source (see
    `_snapshot.bytecode_matches`).
    """
    origin = spec.origin
    if started is None or origin is None:
        return _SourceDigest()
    source, seconds, cache_before, loader = started
    if loader == _OWN_LOADER or cache_before is None:
        # A loader of its own: versionload takes it to compile the source it is given.
        # No cache when the loader looked: it compiled the source (a cache written
        # meanwhile is its own, or, as when it replaces one, taken to be).
        return _SourceDigest(path=origin, stat=source)
    cached = spec.cached
    assert cached is not None
    if loader == _NOT_WRITING and sys.dont_write_bytecode:
        # The loader wrote no cache: it ran this one, or rejected it and compiled.
        return _SourceDigest(path=origin, stat=source, bytecode=(cached, cache_before, seconds))
    cache = _cache_identity_of(cached)
    if cache is None:
        # A cache that vanished during the import may have run.
        return _SourceDigest()
    if cache != cache_before:
        # Written during this import: the loader compiled the source, which the
        # stat check when the hash is computed proves unchanged since before the import.
        return _SourceDigest(path=origin, stat=source)
    return _SourceDigest(path=origin, stat=source, bytecode=(cached, cache, seconds))


def _cache_identity_of(cached: str | None) -> tuple[int, int, int, int] | None:
    if not cached:
        return None
    try:
        return file_identity(os.stat(cached))
    except OSError:
        return None
