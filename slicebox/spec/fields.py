"""Field types for untrusted specs: strict scalars and text that can reach ``exec``.

Pydantic's lax mode turns ``true`` into 1 and ``"1"`` into 1; a spec field takes only its
own type (an int is still a valid float). Every string must survive the trip to
``execve``, SQLite and a terminal: no NUL (C strings end there), no surrogate code point
(UTF-8 cannot encode one, so ``os.fsencode`` and SQLite would raise at launch time).
Sizes are bounded so that argv + environment stay well under the kernel's ``ARG_MAX``.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, Strict

MAX_ARG_BYTES = 64 * 1024  # one argument or one NAME=value (the kernel's cap is 128 KiB)
MAX_EXEC_BYTES = 512 * 1024  # argv + env of one spec (ARG_MAX is 2 MiB with an 8 MiB stack)
MAX_PATH_BYTES = 4095  # PATH_MAX less the NUL
MAX_COMPONENT_BYTES = 255  # NAME_MAX
MAX_TEXT_CHARS = 256  # names, labels, signal names
_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def check_text(value: str) -> str:
    """``value`` if it is free of NULs and surrogates, else ``ValueError`` saying where."""
    bad = _UNSAFE.search(value)
    if bad is None:
        return value
    if bad.group() == "\x00":
        raise ValueError(f"contains a NUL character (at position {bad.start()})")
    raise ValueError(f"contains the unpaired surrogate U+{ord(bad.group()):04X} (at position "
                     f"{bad.start()}); text must be encodable as UTF-8")


def encoded_size(value: str) -> int:
    return len(value.encode("utf-8"))


def _check_arg(value: str) -> str:
    check_text(value)
    if encoded_size(value) > MAX_ARG_BYTES:
        raise ValueError(f"the text is {encoded_size(value)} bytes long; at most "
                         f"{MAX_ARG_BYTES}")
    return value


def _check_path(value: str) -> str:
    check_text(value)
    if not value:
        raise ValueError("the path is empty")
    longest = max(value.split("/"), key=encoded_size)
    if encoded_size(longest) > MAX_COMPONENT_BYTES:
        raise ValueError(f"the path has a {encoded_size(longest)}-byte name in it; a file "
                         f"name is at most {MAX_COMPONENT_BYTES} bytes")
    if encoded_size(value) > MAX_PATH_BYTES:
        raise ValueError(f"the path is {encoded_size(value)} bytes long; at most "
                         f"{MAX_PATH_BYTES}")
    return value


def _list_not_set(value: object) -> object:
    # A YAML !!set is unordered: an argv or a preference list in random order is a bug.
    if isinstance(value, set | frozenset):
        raise ValueError("must be a list, not a set")
    return value


StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Text = Annotated[str, Strict(), Field(max_length=MAX_TEXT_CHARS), AfterValidator(check_text)]
Arg = Annotated[str, Strict(), AfterValidator(_check_arg)]
PathText = Annotated[str, Strict(), AfterValidator(_check_path)]
Sequence = BeforeValidator(_list_not_set)
