"""
Checking what callers pass in, before anything changes; and the one rule for paths
and roots that those checks set up.

Every public entry point checks its arguments here first, so bad input fails with an
`InvalidArgumentError` naming the argument, and nothing (no module, no version, no
setting) has changed yet. Each check returns the value in the form the core keeps:
a tuple instead of any iterable, a resolved path instead of any spelling of one.

Roots are kept resolved (`resolve`: absolute, symlinks followed, case folded where
the file system folds it), and `is_under` resolves the path it is asked about the same
way, so a symlink can neither lead a reload out of its allowed roots nor hide a
watched file from the watcher. It is the only place that answers "does this path lie
in one of these directories".

Pure functions: no locks; the only I/O is resolving and testing paths. The one state
is `resolve_file`'s bounded cache, for the import path (see there).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from types import ModuleType
from typing import Literal, TypeVar, cast

from ._errors import InvalidArgumentError

#: Versions kept per module when nothing else is asked for.
DEFAULT_MAX_VERSIONS = 10

UpdateMode = Literal["rebind", "in-place"]
UPDATE_MODES: tuple[UpdateMode, ...] = ("rebind", "in-place")

_T = TypeVar("_T")


def is_iterable(value: object) -> bool:
    """
    Whether ``iter(value)`` works.
    """
    try:
        iter(value)  # type: ignore[call-overload]
    except TypeError:
        return False
    return True


# -- paths and roots ------------------------------------------------------------------


def resolve(path: str) -> str:
    """
    ``path`` as roots are kept: absolute, symlinks resolved, case folded where the
    file system is case-insensitive.
    """
    return os.path.normcase(os.path.realpath(path))


#: Whether ``path[: path.rfind(os.sep) + 1]`` (the directory part, separator kept)
#: determines ``os.path.dirname(path)``: with one separator and no drives, dirname is
#: that part without its trailing separators (unless it is all separators). The import
#: path keys its per-directory caches by it: a slice instead of posixpath's calls.
FAST_DIRECTORY_KEY = os.altsep is None and os.path.dirname("/a//b") == "/a"

#: File -> `resolve` of it, and directory (as ``path[: path.rfind(os.sep) + 1]``, see
#: `FAST_DIRECTORY_KEY`) -> its resolved form with a trailing separator; bounded like
#: the other verdict caches. Only where `FAST_DIRECTORY_KEY` holds.
_RESOLVED_FILES: dict[str, str] = {}
_RESOLVED_DIRECTORIES: dict[str, str] = {}
_RESOLVED_MAX = 8192
_SEP = os.sep
_SPECIAL_NAMES = ("", os.curdir, os.pardir)


def directory_key(path: str) -> str:
    """
    What the per-directory verdict caches key a module's file by: its directory part
    with the separator kept where `FAST_DIRECTORY_KEY` holds (a slice), else
    ``os.path.dirname``. The import path's hottest checks write the slice out inline.
    """
    return path[: path.rfind(_SEP) + 1] if FAST_DIRECTORY_KEY else os.path.dirname(path)


def resolve_file(path: str) -> str:
    """
    `resolve` of a module's file, as the import path asks it (the watcher's index,
    the library check, the run command's log filter: up to four times per load).

    ``realpath`` walks every component with an ``lstat`` each; here each directory
    is resolved once (from its parent's answer, when that is known: then only its
    own last component is checked for being a symlink), and each file only checked
    for being a symlink itself (then it is resolved in full). The answers are kept
    as the verdicts built on them are (the watcher decides once per directory and
    per file): a symlink changed later is not seen.
    """
    found = _RESOLVED_FILES.get(path)
    if found is not None:
        return found
    if not FAST_DIRECTORY_KEY or not path.startswith(_SEP):
        return resolve(path)
    cut = path.rfind(_SEP) + 1
    base = path[cut:]
    if base in _SPECIAL_NAMES or os.path.islink(path):
        found = resolve(path)
    else:
        found = _resolved_directory(path[:cut]) + base
    if len(_RESOLVED_FILES) < _RESOLVED_MAX:
        _RESOLVED_FILES[path] = found
    return found


def resolve_directory_of(path: str) -> str:
    """
    ``resolve(os.path.dirname(path))`` for a module's file, kept as `resolve_file` keeps it.
    """
    if not FAST_DIRECTORY_KEY or not path.startswith(_SEP):
        return resolve(os.path.dirname(path))
    found = _resolved_directory(path[: path.rfind(_SEP) + 1])
    return found if len(found) == 1 else found[:-1]


def _resolved_directory(key: str) -> str:
    # ``key``: an absolute directory with its trailing separator. realpath(parent/name)
    # is realpath(parent)/name when parent/name is not a symlink (nor "." or ".."). An
    # import ends after the imports it made, so a package's subdirectory is often
    # asked before the package's own: walk up to the nearest directory known, then
    # down again, checking one component each step, keeping each answer.
    found = _RESOLVED_DIRECTORIES.get(key)
    if found is not None:
        return found
    below: list[tuple[str, str]] = []
    while True:
        cut = key.rfind(_SEP, 0, len(key) - 1) + 1
        name = key[cut:-1]
        if not cut or name in _SPECIAL_NAMES:
            found = _remember_directory(key, os.path.join(resolve(os.path.dirname(key)), ""))
            break
        below.append((key, name))
        key = key[:cut]
        found = _RESOLVED_DIRECTORIES.get(key)
        if found is not None:
            break
    for key, name in reversed(below):
        if os.path.islink(key[:-1]):
            found = _remember_directory(key, os.path.join(resolve(key[:-1]), ""))
        else:
            found = _remember_directory(key, found + name + _SEP)
    return found


def _remember_directory(key: str, resolved: str) -> str:
    if len(_RESOLVED_DIRECTORIES) < _RESOLVED_MAX:
        _RESOLVED_DIRECTORIES[key] = resolved
    return resolved


def is_under(path: str, roots: Iterable[str]) -> bool:
    """
    Whether ``path``, resolved, is one of ``roots`` or lies inside one.

    ``roots`` must already be resolved (`resolve`, `allowed_roots`, `watch_paths`):
    they are compared as they are, once per call.
    """
    return lies_under(resolve(path), roots)


def lies_under(real: str, roots: Iterable[str]) -> bool:
    """
    `is_under` for a path already resolved (`resolve`, `resolve_file`).
    """
    if FAST_DIRECTORY_KEY and type(roots) is tuple and _is_plain(real):
        # For a plain path and plain roots, commonpath's answer is a string comparison,
        # without its splitting and joining: asked once per directory a program imports from.
        plain = _PLAIN_ROOTS.get(roots)
        if plain is None:
            plain = _plain_roots(roots)
        if plain:
            for root, prefix in plain:  # noqa: SIM110 - a loop: no generator per call
                if real == root or real.startswith(prefix):
                    return True
            return False
    for root in roots:
        try:
            if os.path.commonpath([real, root]) == root:
                return True
        except ValueError:
            continue  # different drives on Windows
    return False


_DOUBLE_SEP = _SEP + _SEP
_DOT_COMPONENT = _SEP + os.curdir + _SEP
#: Roots `lies_under` was asked about -> each root and its prefix (the root with one
#: separator after it), or () when a root is not plain (or there is none).
_PLAIN_ROOTS: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}


def _plain_roots(roots: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    plain = tuple((root, root if root == _SEP else root + _SEP) for root in roots if _is_plain(root))
    if len(plain) != len(roots):
        plain = ()
    if len(_PLAIN_ROOTS) < _RESOLVED_MAX:
        _PLAIN_ROOTS[roots] = plain
    return plain


def _is_plain(path: str) -> bool:
    # Absolute, split by the separator into non-empty components other than "." (no
    # doubled separator, no "." component, no trailing one, unless it is the root).
    return (
        isinstance(path, str)
        and path.startswith(_SEP)
        and _DOUBLE_SEP not in path
        and _DOT_COMPONENT not in path
        and not path.endswith(_SEP + os.curdir)
        and (path == _SEP or not path.endswith(_SEP))
    )


def paths(value: object, argument: str) -> list[str]:
    """
    One path or an iterable of paths (``str`` or ``os.PathLike``), as a list of strings.

    Raises:
        InvalidArgumentError: ``value`` is neither, or an item is not a non-empty path.
    """
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not is_iterable(items):
        raise InvalidArgumentError(f"{argument} must be a path or an iterable of paths, got {value!r}")
    found: list[str] = []
    for item in items:  # type: ignore[attr-defined]
        path = os.fspath(item) if isinstance(item, (str, os.PathLike)) else None
        if not isinstance(path, str) or not path:
            raise InvalidArgumentError(f"{argument} must be a path or an iterable of paths, got {item!r}")
        found.append(path)
    return found


def allowed_roots(value: object) -> tuple[str, ...] | None:
    """
    ``allowed_roots``: None (any origin), one path, or an iterable of paths; each
    resolved, so that a link cannot lead a reload outside.
    """
    if value is None:
        return None
    return tuple(resolve(path) for path in paths(value, "allowed_roots"))


def watch_paths(value: object) -> tuple[str, ...]:
    """
    The paths of `versionload.watch`: existing files or directories, made absolute
    (not resolved: they are shown back to the user and given to the OS watch).

    Raises:
        InvalidArgumentError: a path has the wrong type or does not exist, or there is none.
    """
    found = [os.path.normcase(os.path.abspath(path)) for path in paths(value, "paths")]
    for path in found:
        if not os.path.exists(path):
            raise InvalidArgumentError(f"cannot watch {path!r}: no such file or directory")
    if not found:
        raise InvalidArgumentError("paths is empty: give at least one directory, or None for the defaults")
    return tuple(found)


# -- settings -------------------------------------------------------------------------


def patterns(value: object, argument: str) -> tuple[str, ...] | None:
    """
    ``include`` / ``exclude``: None, one module-name pattern, or an iterable of them.
    """
    if value is None:
        return None
    found: tuple[object, ...] | None = None
    if isinstance(value, str):
        found = (value,)
    elif is_iterable(value):
        found = tuple(cast(Iterable[object], value))
    if found is None or not all(isinstance(p, str) and p for p in found):
        raise InvalidArgumentError(
            f"{argument} must be a module-name pattern or an iterable of them, got {value!r}"
        )
    return cast(tuple[str, ...], found)


def name_matches(name: str, patterns: Iterable[str]) -> bool:
    """
    Whether a module name matches one of ``patterns`` (``fnmatch``, case-sensitive),
    as ``include``, ``exclude`` and cascade patterns match.
    """
    # "pkg.*" also covers "pkg" itself: a user who asks for a package's modules
    # means the package too.
    return any(
        fnmatch.fnmatchcase(name, pattern) or (pattern.endswith(".*") and name == pattern[:-2])
        for pattern in patterns
    )


def cascade(value: object) -> tuple[str, ...] | Literal[False] | None:
    """
    ``cascade``: False (no cascade), True (the default reach), or one module-name
    pattern or an iterable of them, saying exactly which dependents may be reloaded.

    Returns:
        False for no cascade, None for the default reach, else the patterns as a tuple.

    Raises:
        InvalidArgumentError: anything else (a truthy value such as ``1`` or
            ``"yes"`` is not a switch here: a string is a pattern), or an empty pattern.
    """
    if value is False:
        return False
    if value is True:
        return None
    found: tuple[object, ...] | None = None
    if isinstance(value, str):
        found = (value,)
    elif is_iterable(value) and not isinstance(value, (bytes, bytearray, dict)):
        found = tuple(cast(Iterable[object], value))
    if found is None or not all(isinstance(p, str) and p for p in found):
        raise InvalidArgumentError(
            f"cascade must be True, False, a module-name pattern or an iterable of them, got {value!r}"
        )
    return cast(tuple[str, ...], found)


def max_versions(value: object) -> int:
    """
    ``max_versions``: None (the default, `DEFAULT_MAX_VERSIONS`) or a whole number of at least 1.
    """
    if value is None:
        return DEFAULT_MAX_VERSIONS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"max_versions must be a whole number of at least 1, got {value!r}")
    return value


def update_mode(value: object) -> UpdateMode:
    """
    ``update``: None (the default) or ``"rebind"``, or ``"in-place"``.
    """
    if value is None:
        return "rebind"
    if isinstance(value, str) and value in UPDATE_MODES:
        return value
    raise InvalidArgumentError(f"update must be None, 'rebind' or 'in-place', got {value!r}")


# -- values ---------------------------------------------------------------------------


def version_number(value: object, argument: str, what: str = "version number") -> int:
    """
    A version number: an int (a bool is refused, though Python counts it as one).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{argument} must be a {what} (int), got {value!r}")
    return value


def changeset_id(value: object, argument: str = "changeset") -> int | None:
    """
    A changeset id or None: an int of at least 1 (a bool is refused).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{argument} must be a changeset id (int >= 1) or None, got {value!r}")
    return value


def trigger(value: object) -> str | None:
    """
    What asked for a change, as recorded in its changeset: a non-empty string or None.
    """
    return None if value is None else text(value, "trigger")


def text(value: object, argument: str) -> str:
    """
    A name such as an entry point group: a non-empty string.
    """
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{argument} must be a non-empty string, got {value!r}")
    return value


def seconds(value: object, argument: str, *, most: float) -> float:
    """
    A duration in seconds, above 0 and at most ``most``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= most:
        raise InvalidArgumentError(f"{argument} must be a number of seconds in (0, {most:g}], got {value!r}")
    return float(value)


def instance(value: object, kind: type[_T], argument: str, shown: str) -> _T:
    """
    An object of one of our own types (a tracker, an event), named as the user knows it (``shown``).
    """
    if not isinstance(value, kind):
        raise InvalidArgumentError(f"{argument} must be a {shown}, got {value!r}")
    return value


def choice(value: object, options: tuple[str, ...], argument: str) -> str:
    """
    One of a few fixed strings.
    """
    if not isinstance(value, str) or value not in options:
        raise InvalidArgumentError(f"{argument} must be one of {', '.join(options)}; got {value!r}")
    return value


def flag(value: object, argument: str) -> bool:
    """
    A switch such as ``cascade``: exactly True or False (a truthy value is refused,
    since ``cascade="no"`` would mean yes).
    """
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{argument} must be True or False, got {value!r}")
    return value


def callback(value: _T, argument: str) -> _T:
    """
    Something that will be called later: refused now, when the mistake is made,
    rather than when it is first called.
    """
    if not callable(value):
        raise InvalidArgumentError(f"{argument} must be callable, got {value!r}")
    return value


def module_list(modules: object) -> list[object]:
    """
    A `reload_many` argument as a list, refusing a bare string or module (a common slip).
    """
    if isinstance(modules, (str, ModuleType)) or not isinstance(modules, Iterable):
        raise InvalidArgumentError(
            f"reload_many takes an iterable of modules or module names, got {type(modules).__name__}"
        )
    return list(modules)
