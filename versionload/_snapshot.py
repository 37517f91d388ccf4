"""
Frozen records of module states: `ModuleVersion` and `NamespaceDiff`.

A version holds a shallow copy of the module's namespace (the bindings, not copies
of the objects), which is all a rollback needs and all that is safe to copy: deep
copies would break identity, and identity is what other modules hold on to.
Everything derived from the bindings (name sets, diffs, the source hash of a
first import) is computed when first asked for, so recording a version stays cheap.
"""

from __future__ import annotations

import _imp
import functools
import hashlib
import importlib.util
import os
import types
import weakref
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Literal

import attrs

Reason = Literal["import", "adopted", "reload"]

#: Types whose equal values count as "unchanged" in a diff even when a reload
#: produced new objects: re-executing ``TIMEOUT = 3.5`` is not a change.
_VALUE_TYPES = (int, float, complex, str, bytes, bool, type(None), range)
_SCALAR_TYPES = frozenset({int, float, complex, str, bytes, bool, type(None)})


def _equal(old: object, new: object) -> bool:
    """
    ``old == new`` for a diff, which must never fail: a value whose ``__eq__`` raises,
    or answers something whose truth value raises (arrays answer arrays), counts as changed.
    """
    try:
        return bool(old == new)
    except Exception:  # noqa: BLE001 - user code; comparing for an event must not fail the operation
        return False


def _same_value(old: object, new: object, depth: int = 0) -> bool:
    if old is new:
        return True
    if type(old) is not type(new) or depth > 3:
        return False
    if isinstance(old, _VALUE_TYPES):
        # Exact builtin types compare in C and cannot fail; subclasses may define __eq__.
        return old == new if type(old) in _SCALAR_TYPES else _equal(old, new)
    if isinstance(old, (tuple, frozenset)):
        # Containers compare element-wise by the same rule, never by their own __eq__,
        # so arbitrary objects (arrays, proxies) are never asked to compare themselves.
        if len(old) != len(new):  # type: ignore[arg-type]
            return False
        if isinstance(old, frozenset):
            # Set equality calls the elements' __hash__ and __eq__: guarded like any subclass.
            return all(isinstance(x, _VALUE_TYPES) for x in old) and _equal(old, new)
        if type(old) is tuple and depth < 3:
            # The common case, a tuple of plain scalars, in C: element types pairwise
            # identical and all builtin scalars, then the elements' own (builtin) ==.
            old_types = tuple(map(type, old))
            if _SCALAR_TYPES.issuperset(old_types) and old_types == tuple(map(type, new)):  # type: ignore[call-overload]
                return old == new
        return all(_same_value(a, b, depth + 1) for a, b in zip(old, new, strict=True))  # type: ignore[call-overload]
    return False


class _SourceDigest:
    """
    The sha256 of a version's source, known at once or computed on first use.

    A first import reads only the bytecode cache when it is valid, so hashing the
    source then would cost a file read per import. Instead the import records what
    proves which bytes ran, and the hash is computed when first asked for, from the
    file as it is then, only while that proof still holds; otherwise it is None.

    The proof (see `_source.import_digest`) is ``stat``, the source's `stat_key` from
    before an import that ran the bytes the file held then (the file must still have
    it, so it did not change since), and, when that import may have run a ``.pyc``,
    ``bytecode``: the cache's path, its `file_identity` after the import and the
    source's whole-second mtime; the cache must still be that file, and show that it
    held these bytes. A digest made
    by `source_digest` proves only that the file was not modified after ``not_after_ns``.
    """

    __slots__ = ("_digest", "_not_after_ns", "_path", "_pending", "_proof")

    def __init__(
        self,
        digest: str | None = None,
        *,
        path: str | None = None,
        not_after_ns: int = 0,
        stat: StatKey | None = None,
        bytecode: BytecodeProof | None = None,
    ) -> None:
        self._digest = digest
        self._path = path
        self._not_after_ns = not_after_ns
        self._proof = None if stat is None else (stat, bytecode)
        self._pending = path is not None

    @property
    def pending(self) -> bool:
        """
        Whether the hash is still to be computed.
        """
        return self._pending

    @property
    def known(self) -> str | None:
        return None if self._pending else self._digest

    @property
    def value(self) -> str | None:
        if self._pending:
            # Racing threads compute the same value; the last write wins harmlessly.
            proof = self._proof
            if proof is None:
                self._digest = _hash_if_unchanged(self._path, self._not_after_ns)
            else:
                self._digest = _hash_if_proven(self._path, *proof)
            self._pending = False
        return self._digest


#: A source file's ``(st_mtime_ns, st_size, st_ctime_ns)``: any write changes it, since
#: ``st_ctime_ns`` changes even when a writer puts the old ``st_mtime_ns`` back.
StatKey = tuple[int, int, int]
#: A bytecode cache's path; its `file_identity` after the import, or, when the import
#: did not look at the cache file itself, when the import began (``time.time_ns()``);
#: and the source's whole-second mtime.
BytecodeProof = tuple[str, "tuple[int, int, int, int] | int", int]
#: The bytecode caches this process's first imports wrote, each as compiled from a
#: source with this `stat_key`, with the cache's `file_identity` just after (see
#: `_source.note_cache_written`). While a cache still has that identity and its source
#: that stat, it holds that source. One entry per cache path, replaced when rewritten.
compiled_caches: dict[str, tuple[tuple[int, int, int, int], StatKey]] = {}

#: How far apart two file timestamps must be to tell which file changed first: a
#: filesystem that keeps whole seconds (FAT keeps even ones) cannot order nearer ones;
#: others stamp files from one coarse kernel clock that ticks every few milliseconds.
_COARSE_TIMESTAMP_NS = 2_000_000_000
_FINE_TIMESTAMP_NS = 20_000_000


def timestamp_margin(example_ns: int) -> int:
    """
    How far apart a file's timestamp must be from another time to tell which came
    first, on a filesystem whose timestamps look like ``example_ns``.
    """
    return _COARSE_TIMESTAMP_NS if example_ns % 1_000_000_000 == 0 else _FINE_TIMESTAMP_NS


def stat_key(stat: os.stat_result) -> StatKey:
    return stat.st_mtime_ns, stat.st_size, stat.st_ctime_ns


def file_identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """
    Which file is there and which write it last had: a replaced or rewritten file differs.
    """
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _hash_if_unchanged(path: str | None, not_after_ns: int) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_mtime_ns > not_after_ns:
                return None
            return hashlib.sha256(file.read()).hexdigest()
    except OSError:
        return None


def _hash_if_proven(path: str | None, stat: StatKey, bytecode: BytecodeProof | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            if stat_key(os.fstat(file.fileno())) != stat:
                return None
            data = file.read()
    except OSError:
        return None
    if len(data) != stat[1] or (bytecode is not None and not bytecode_matches(bytecode, stat, data)):
        return None
    return hashlib.sha256(data).hexdigest()


def bytecode_matches(bytecode: BytecodeProof, stat: StatKey, data: bytes) -> bool:
    """
    Whether an import that found this bytecode cache ran ``data`` (the source, which
    has not changed since): the cache held it, or the loader rejected the cache and
    compiled the source. The cache must be the very file the import found: the same
    `file_identity`; or, when the import began at ``identity`` (an int) without
    looking at the cache file, a file whose every change came before that by more
    than the timestamps' granularity (``st_ctime_ns`` counts any write or rename, and
    no writer can set it back), or the very cache this process's loader wrote from
    this source (`compiled_caches`).
    """
    cache_path, identity, seconds = bytecode
    try:
        fd = os.open(cache_path, os.O_RDONLY)
        try:
            header = os.read(fd, 16)
            cache = os.fstat(fd)
        finally:
            os.close(fd)
    except OSError:
        return False
    if isinstance(identity, int):
        if max(cache.st_mtime_ns, cache.st_ctime_ns) + timestamp_margin(cache.st_mtime_ns) >= identity:
            # Changed during the import or since, or too near its start to tell.
            return compiled_caches.get(cache_path) == (file_identity(cache), stat)
    elif file_identity(cache) != identity:
        return False  # replaced since the import: what it held then is unknown
    return header_holds(header, cache, seconds, stat, data)


def header_holds(header: bytes, cache: os.stat_result, seconds: int, stat: StatKey, data: bytes) -> bool:
    """
    Whether a loader that found a bytecode cache with this ``header`` (the file's first
    16 bytes, its stat ``cache``) for a source of whole-second mtime ``seconds`` and
    `stat_key` ``stat`` ran ``data``: the cache held it, or the loader rejected the
    cache and compiled the source.
    """
    flags = int.from_bytes(header[4:8], "little")
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER or flags & ~0b11:
        return True  # the loader rejects such a cache and compiles the source
    if flags & 0b1:
        check = _imp.check_hash_based_pycs
        if check == "always" or (flags & 0b10 and check != "never"):
            # The loader compared the source's hash with the cache's and ran the cache
            # only if they matched, else the source: either way, the source.
            return True
        # Run unchecked: the header names the source the bytecode came from.
        return importlib.util.source_hash(data) == header[8:16]
    if header[8:16] != (seconds & 0xFFFFFFFF).to_bytes(4, "little") + (stat[1] & 0xFFFFFFFF).to_bytes(
        4, "little"
    ):
        return True  # out of date by the loader's own check: it compiled the source
    # The cache passed the loader's check and ran. It holds this source only if the
    # source last changed before the cache was written; st_ctime_ns counts too, since
    # an editor (or an attacker) can put the old st_mtime_ns back.
    changed_ns = max(stat[0], stat[2])
    written_ns = cache.st_mtime_ns
    coarse = changed_ns % 1_000_000_000 == 0 and written_ns % 1_000_000_000 == 0
    return changed_ns + (_COARSE_TIMESTAMP_NS if coarse else _FINE_TIMESTAMP_NS) < written_ns


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_digest(origin: str | None, recorded_ns: int) -> _SourceDigest:
    """
    The digest of a version whose code the import system loaded from ``origin``:
    hashed later, if ``origin`` is a Python source file unchanged since ``recorded_ns``.
    """
    if origin is None or not origin.endswith(".py"):
        return _SourceDigest()
    return _SourceDigest(path=origin, not_after_ns=recorded_ns)


@attrs.frozen(repr=False)
class ModuleVersion:
    """
    One recorded state of a module: the namespace it had and where its code came from.

    Attributes:
        module: The module's dotted name.
        number: 1, 2, 3… per module name; numbers only ever go up.
        reason: ``"import"`` (recorded by the import hook), ``"adopted"`` (recorded
            from an already-imported module), or ``"reload"``.
        created_at: When the version was recorded (UTC).
        origin: The file the code came from, or None (builtins, namespace packages).
        bindings: The namespace at that moment, read-only; a rollback restores it.
        module_class: The module object's class at that moment (`types.ModuleType`
            unless the code set ``sys.modules[__name__].__class__``); a rollback
            restores it too.

    .. versionadded:: 0.1.0
    """

    module: str
    number: int
    reason: Reason
    created_at: datetime
    origin: str | None
    bindings: Mapping[str, object] = attrs.field(eq=False)
    # The hash itself once known (a reload): a _SourceDigest would cost ~64 bytes more.
    _digest: str | _SourceDigest | None = attrs.field(eq=False, alias="digest")
    module_class: type[types.ModuleType] = attrs.field(default=types.ModuleType, eq=False, kw_only=True)

    @property
    def source_sha256(self) -> str | None:
        """
        The sha256 (hex) of the source bytes that were executed, or None when unknown.

        It never names bytes that did not run. For a reload it is exactly the bytes
        versionload compiled. For a first import it is computed on first access from
        the file, only while what the import recorded (the file's stat, the header and
        time of a ``.pyc`` it ran) still proves the file holds the bytes that ran: a
        stale ``.pyc`` or a later edit makes it None. For an adopted module, or code
        without source, it is None. See docs/semantics.md, "Source hashes".
        """
        digest = self._digest
        return digest.value if isinstance(digest, _SourceDigest) else digest

    @property
    def known_source_sha256(self) -> str | None:
        """
        `source_sha256` if it is already known, without reading any file.
        """
        digest = self._digest
        return digest.known if isinstance(digest, _SourceDigest) else digest

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """
        The names bound in the namespace of this version.
        """
        return frozenset(self.bindings)

    def __repr__(self) -> str:
        return (
            f"<ModuleVersion {self.module} #{self.number} {self.reason} "
            f"names={len(self.bindings)} at {self.created_at.isoformat(timespec='milliseconds')}>"
        )


def make_version(
    module: str,
    number: int,
    reason: Reason,
    namespace: dict[str, object],
    origin: str | None,
    digest: _SourceDigest,
    created_ns: int,
    *,
    copy: bool = True,
    module_class: type[types.ModuleType] = types.ModuleType,
) -> ModuleVersion:
    """
    Record ``namespace`` (copied shallowly here, unless ``copy`` is false because the
    caller passes a copy of its own) as version ``number`` of ``module``.
    """
    return ModuleVersion(
        module=module,
        number=number,
        reason=reason,
        created_at=datetime.fromtimestamp(created_ns / 1e9, tz=timezone.utc),
        origin=origin,
        bindings=types.MappingProxyType(dict(namespace) if copy else namespace),
        digest=digest if digest.pending else digest.value,
        module_class=module_class,
    )


@attrs.frozen
class NamespaceDiff:
    """
    What changed between two namespaces of one module.

    ``changed`` lists names bound to a different object, except plain values
    (numbers, strings, bytes, None, and tuples of those) that are equal.
    Each tuple is sorted. A diff is true when anything changed.

    .. versionadded:: 0.1.0
    """

    module: str
    from_version: int
    to_version: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


#: Import-system attributes that every reload rebinds to new but equal objects.
_IMPORT_ATTRIBUTES = frozenset({"__spec__", "__loader__", "__path__"})


def _unchanged(name: str, old: object, new: object) -> bool:
    if name in _IMPORT_ATTRIBUTES and type(old) is type(new):
        return _equal(old, new)  # a loader with a broken __eq__ counts as changed
    return _same_value(old, new)


def compare(
    module: str,
    from_version: int,
    old: Mapping[str, object],
    to_version: int,
    new: Mapping[str, object],
) -> NamespaceDiff:
    """
    Compute the `NamespaceDiff` from namespace ``old`` to namespace ``new``.
    """
    old_keys = old.keys()
    new_keys = new.keys()
    # Most names of a reloaded module are bound to the very same object (constants
    # folded into the code, imported modules): test identity before anything else.
    changed = [
        name
        for name in old_keys & new_keys
        if (before := old[name]) is not (after := new[name]) and not _unchanged(name, before, after)
    ]
    return NamespaceDiff(
        module=module,
        from_version=from_version,
        to_version=to_version,
        added=tuple(sorted(new_keys - old_keys)),
        removed=tuple(sorted(old_keys - new_keys)),
        changed=tuple(sorted(changed)),
    )


#: Diffs computed lately between two recorded versions, by the identities of the
#: versions. A version's bindings never change, so the diff of a pair never does: a
#: rollback to the version just before a reload reads the reload's diff backwards
#: instead of comparing every name again (most of a rendered rollback's time).
#: Weak references tell a live version from a new object that reuses its id.
_RECENT_DIFFS: dict[
    tuple[int, int], tuple[weakref.ref[ModuleVersion], weakref.ref[ModuleVersion], NamespaceDiff]
] = {}
_RECENT_DIFFS_LIMIT = 64


def recent_diff(old: ModuleVersion, new: ModuleVersion) -> NamespaceDiff | None:
    """
    The diff from version ``old`` to ``new`` if it was computed lately, in either
    direction (added and removed swap; ``changed`` is symmetric, as the value
    comparison is); else None.
    """
    for first, second, backwards in ((old, new, False), (new, old, True)):
        cached = _RECENT_DIFFS.get((id(first), id(second)))
        if cached is not None and cached[0]() is first and cached[1]() is second:
            diff = cached[2]
            if backwards:
                return NamespaceDiff(
                    module=diff.module,
                    from_version=diff.to_version,
                    to_version=diff.from_version,
                    added=diff.removed,
                    removed=diff.added,
                    changed=diff.changed,
                )
            return diff
    return None


def compare_versions(old: ModuleVersion, new: ModuleVersion) -> NamespaceDiff:
    """
    The `NamespaceDiff` from the bindings of version ``old`` to those of ``new``.

    Equal to ``compare`` of the two bindings; reuses a diff computed lately for the
    same pair (see `recent_diff`) and keeps this one for later.
    """
    known = recent_diff(old, new)
    if known is not None:
        return known
    diff = compare(old.module, old.number, old.bindings, new.number, new.bindings)
    recent = _RECENT_DIFFS
    while len(recent) >= _RECENT_DIFFS_LIMIT:
        try:  # oldest first; another thread may have dropped it already
            del recent[next(iter(recent))]
        except (KeyError, StopIteration):
            break
    recent[(id(old), id(new))] = (weakref.ref(old), weakref.ref(new), diff)
    return diff


# -- changesets -----------------------------------------------------------------------------

ChangesetKind = Literal["reload", "rollback", "undo"]


@attrs.frozen
class Change:
    """
    What one changeset did to one module: the version current before and after it.

    .. versionadded:: 0.2.0
    """

    module: str
    before: int
    after: int


@attrs.frozen
class Changeset:
    """
    One operation that changed modules, recorded as the unit it was applied as.

    Attributes:
        id: 1, 2, 3… per tracker; ids only ever go up.
        kind: ``"reload"`` (a reload, `reload_many`, cascade, in-place update, plugin
            or watcher reload), ``"rollback"`` or ``"undo"``.
        created_at: When it was applied (UTC).
        changes: For each module, the version before and after, in the order applied.
        trigger: What asked for it: the module named, ``"watch:<path>"``,
            ``"plugin:<name>"``, ``"control"``, ``"fleet:<command>"``, ``"undo <id>"``….
        undoes: For an ``"undo"``, the id of the changeset it undid.
        undone_by: The id of the ``"undo"`` changeset that undid this one, if any.
        undoable: Whether `undo` can take it now: False once it was undone, or once a
            version it would return a module to was pruned (or the module's history
            ended). Read when the list was made.

    .. versionadded:: 0.2.0
    """

    id: int
    kind: ChangesetKind
    created_at: datetime
    changes: tuple[Change, ...]
    trigger: str
    undoes: int | None = None
    undone_by: int | None = None
    undoable: bool = True

    @property
    def modules(self) -> tuple[str, ...]:
        """
        The names of the modules it changed, in the order applied.
        """
        return tuple(change.module for change in self.changes)
