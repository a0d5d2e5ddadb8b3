"""Reading what users hand us (job files, pool files): size-capped YAML, readable errors.

Shared by ``slicebox.spec`` and ``slicebox.pool.files`` so that both reject a huge,
unreadable or non-YAML file the same way, and both name the field a pydantic error is in.

Everything here assumes the input is hostile:

* a path is resolved by the kernel (``O_PATH``), so symlink loops, over-long names, NUL
  bytes and unencodable characters become one-line errors, and nothing is opened that is
  not a regular file (a FIFO would block for ever, ``/dev/zero`` would never end, opening
  some devices has side effects);
* the bytes read are bounded whatever ``stat`` claims (``/proc`` files say 0 bytes);
* nesting depth and node count are checked on the parser's event stream, before any
  object is built (a 500-deep document would exhaust the recursion limit);
* a key given twice is an error, not "the last one wins";
* aliases count as what they repeat (no "billion laughs");
* no string may hold a NUL or a surrogate (nothing could pass it to the OS or SQLite);
* error messages never quote the file's text, except key names that look like field
  names: a job file that is a symlink to ``/etc/shadow`` must not print its lines.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

MAX_DEPTH = 32  # a job spec nests 3 levels, a pool file 5; 500 would crash the composer
MAX_NODES = 100_000  # scalars + collections + aliases in one document
# The kernel's pseudo file systems: their "files" lie about their size, block, or never end.
SYSTEM_ROOTS = ("/proc", "/sys", "/dev")
_FIELD_SHAPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
NOT_FOUND = "does not exist"
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
_YAML_MERGE_TAG = "tag:yaml.org,2002:merge"
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PathProblem(Exception):
    """A path could not be resolved or is not what is needed; ``str()`` says why."""


def shown(value: object, limit: int = 120) -> str:
    """``value`` as text that is safe to print in one line: control characters, NULs and
    surrogates escaped (printing a lone surrogate would itself raise), long text cut."""
    text = repr(str(value))[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def in_system_tree(real: str) -> bool:
    """True for ``/``-rooted paths inside ``/proc``, ``/sys`` or ``/dev`` (or those roots)."""
    return any(real == root or real.startswith(root + "/") for root in SYSTEM_ROOTS)


def _open_path(path: str | os.PathLike[str]) -> int:
    """An ``O_PATH`` descriptor: the kernel follows the symlinks, nothing is opened (no FIFO
    blocks, no device driver runs). Loops, over-long names, NUL bytes and surrogates
    raise ``PathProblem``."""
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PathProblem(NOT_FOUND) from None
    except OSError as exc:
        raise PathProblem(exc.strerror or str(exc)) from None
    except ValueError:  # embedded NUL, or a character the file system encoding refuses
        raise PathProblem("the path contains a NUL byte or an unpaired surrogate") from None


def resolve(path: str | os.PathLike[str]) -> tuple[str, os.stat_result]:
    """The real path of an existing ``path`` and its ``stat``, symlinks followed safely."""
    fd = _open_path(path)
    try:
        return os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd)
    finally:
        os.close(fd)


def file_kind(info: os.stat_result) -> str:
    """What a ``stat`` result is, in words (for "X is a named pipe, not a regular file")."""
    mode = info.st_mode
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: str | os.PathLike[str], max_bytes: int, what: str) -> bytes:
    """The bytes of a regular file outside the system trees, at most ``max_bytes``.
    Raises ``PathProblem`` (the reason, without the path) otherwise."""
    handle = _open_path(path)
    try:
        real, info = os.readlink(f"/proc/self/fd/{handle}"), os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise PathProblem(f"it is {file_kind(info)}, not a regular file")
        if in_system_tree(real):
            raise PathProblem(f"it resolves to {shown(real)}, inside "
                              f"{', '.join(SYSTEM_ROOTS)}")
        if info.st_size > max_bytes:
            raise PathProblem(f"file is {info.st_size} bytes; {what} may be at most "
                              f"{max_bytes} bytes")
        # Reopened through the descriptor: the very file checked above, even if the path
        # was swapped for something else since.
        fd = os.open(f"/proc/self/fd/{handle}",
                     os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PathProblem(exc.strerror or str(exc)) from None
    finally:
        os.close(handle)
    chunks, total = [], 0
    try:
        while total <= max_bytes:  # bounded whatever stat said
            chunk = os.read(fd, max_bytes + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise PathProblem(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if total > max_bytes:
        raise PathProblem(f"file is more than {max_bytes} bytes; {what} may be at most "
                          f"{max_bytes} bytes")
    return b"".join(chunks)


class _UniqueKeyLoader(_SafeLoader):
    """``safe_load`` semantics, except that a key given twice in one mapping is an error."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[object] = set()
            for key_node, _value in node.value:
                if key_node.tag == _YAML_MERGE_TAG:
                    continue  # "<<: *base" then overriding a key is what merges are for
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # unhashable: the base class reports it
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {shown_key(key)} is given twice",
                        key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_shape(text: str, max_depth: int, max_nodes: int) -> str | None:
    """Why the document is too deep or too big, from the event stream (no objects built).

    Aliases count as the size of what they repeat: PyYAML shares the object, but whoever
    validates or walks it visits every copy ("billion laughs")."""
    depth = size = 0
    anchor_size: dict[str, int] = {}
    open_anchors: list[tuple[str | None, int]] = []  # per open collection: anchor, size then
    for event in yaml.parse(text, Loader=_SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            if any(event.anchor == anchor for anchor, _ in open_anchors):
                return (f"line {event.start_mark.line + 1}: the alias *{shown(event.anchor, 40)}"
                        " is inside the value it names (a value cannot contain itself)")
            size += anchor_size.get(event.anchor or "", 1)
        elif isinstance(event, yaml.NodeEvent):
            size += 1
            if isinstance(event, yaml.ScalarEvent) and event.anchor:
                anchor_size[event.anchor] = 1
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            open_anchors.append((event.anchor, size))
            if depth > max_depth:
                return (f"line {event.start_mark.line + 1}: nested more than {max_depth} "
                        "levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            anchor, before = open_anchors.pop()
            if anchor:
                anchor_size[anchor] = size - before + 1
        if size > max_nodes:
            return (f"line {event.start_mark.line + 1}: more than {max_nodes} values "
                    "(aliases count as what they repeat)")
    return None


def _bad_text(data: object, where: str = "") -> str | None:
    """Where the first NUL or surrogate in loaded data is, and what (keys are checked too):
    no such string can be passed to the OS, stored in SQLite or printed."""
    if isinstance(data, str):
        bad = _UNSAFE.search(data)
        if bad is None:
            return None
        what = "a NUL character" if bad.group() == "\x00" else (
            f"the unpaired surrogate U+{ord(bad.group()):04X}")
        return f"{where or 'the document'}: contains {what} (at position {bad.start()})"
    items: list[tuple[str, object]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and _UNSAFE.search(key):
                return f"{where or 'the document'}: a key contains a NUL or a surrogate"
            label = key if isinstance(key, str) and _FIELD_SHAPE.fullmatch(key) else (
                shown_key(key))
            items.append((f"{where}.{label}" if where else label, value))
    elif isinstance(data, list):
        items = [(f"{where}.{i}" if where else str(i), v) for i, v in enumerate(data)]
    for label, value in items:
        found = _bad_text(value, label)
        if found:
            return found
    return None


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """Line, column and problem of a YAML error, without the snippet of the file that
    PyYAML's own message quotes."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if problem is None and isinstance(exc, yaml.reader.ReaderError):
        return f"position {exc.position}: unacceptable character #x{exc.character:04x}"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + shown(problem or type(exc).__name__, 100)


def parse_yaml(text: str, source: str, error: type[Exception], *,
               max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> object:
    """One YAML document (``safe_load`` types), depth and size checked before it is built,
    duplicate keys refused; ``error`` names ``source`` and the reason."""
    try:
        problem = _check_shape(text, max_depth, max_nodes)
        if problem:
            raise error(f"{source}: {problem}")
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML: {_yaml_reason(exc)}") from None
    except RecursionError:  # belt and braces: the depth check should make this impossible
        raise error(f"{source}: nested too deeply") from None
    problem = _bad_text(data)
    if problem:
        raise error(f"{source}: {problem}")
    return data


def read_yaml(path: Path, max_bytes: int, what: str, error: type[Exception], *,
              max_nodes: int = MAX_NODES) -> object:
    """Load ``path`` as YAML (``safe_load`` types: no Python objects), or raise ``error``
    with the file and the reason. ``what`` names the kind of file in the size message;
    ``max_nodes`` caps the values in it (aliases counted as what they repeat)."""
    source = shown(os.fspath(path), 200)
    try:
        data = read_regular_file(path, max_bytes, what)
    except PathProblem as exc:
        raise error(f"{source}: cannot read the file: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{source}: cannot read the file: not UTF-8 text (byte {exc.start})") \
            from None
    return parse_yaml(text, source, error, max_nodes=max_nodes)


def shown_key(key: object) -> str:
    """A mapping key a user wrote, quoted only if it looks like a field name: a key is
    file content, and a file that is not a spec at all must not be printed back."""
    if isinstance(key, str) and _FIELD_SHAPE.fullmatch(key):
        return repr(key)
    if isinstance(key, int) and not isinstance(key, bool) and abs(key) < 10**6:
        return repr(key)
    return "(a key that is not a field name)"


def _location(loc: tuple[int | str, ...]) -> str:
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
        elif _FIELD_SHAPE.fullmatch(part) or part == "[key]":
            parts.append(part)
        else:
            parts.append(shown_key(part))
    return ".".join(parts)


def describe(error: ValidationError) -> str:
    """Every problem as ``field.path: reason``, joined by "; " (the first 20)."""
    lines = []
    for item in error.errors()[:20]:
        where = _location(item["loc"])
        message = shown(item["msg"].removeprefix("Value error, "), 300)
        if item["type"] == "extra_forbidden":
            message = "unknown field (misspelt?)"
        # A whole-model check already names its fields in its message.
        lines.append(f"{where}: {message}" if where else message)
    more = error.error_count() - 20
    return "; ".join(lines) + (f"; and {more} more" if more > 0 else "")
