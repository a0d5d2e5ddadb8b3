"""The kernel's cpulist syntax ("0-3,8-11"), read by discovery and accepted in pool files."""

from __future__ import annotations

from collections.abc import Iterable

MAX_CPU_ID = 1 << 16  # no machine has more; a bigger number is a typo that would eat memory


def cpulist_ranges(text: str, bounded: bool = True) -> list[tuple[int, int]]:
    """``"0-3,8"`` -> ``[(0, 3), (8, 8)]``, checked but not expanded (so a hostile
    ``"0-65536,0-65536,..."`` can be sized before it costs memory); raises ValueError
    naming the bad part. The one parser of the syntax: everything else calls this.
    ``bounded=False`` lets ids past ``MAX_CPU_ID`` through, for a caller that sizes first."""
    ranges: list[tuple[int, int]] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        low_text, sep, high_text = part.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if sep else low
        except ValueError:
            raise ValueError(f"{part!r} is not a core number or a range like 0-3") from None
        if low < 0 or high < low or (bounded and high > MAX_CPU_ID):
            raise ValueError(f"{part!r} is not a valid core range")
        ranges.append((low, high))
    return ranges


def cpulist_size(text: str) -> int:
    """How many core ids ``text`` names (repeats counted), without expanding it."""
    return sum(high - low + 1 for low, high in cpulist_ranges(text, bounded=False))


def parse_cpulist(text: str) -> tuple[int, ...]:
    """``"0-3,8,10-11"`` -> ``(0, 1, 2, 3, 8, 10, 11)``; raises ValueError naming the bad part."""
    cores: list[int] = []
    for low, high in cpulist_ranges(text):
        cores.extend(range(low, high + 1))
    if len(set(cores)) != len(cores):
        raise ValueError(f"{text!r} names a core twice")
    return tuple(sorted(cores))


def format_cpulist(cores: Iterable[int]) -> str:
    """``(0, 1, 2, 3, 8)`` -> ``"0-3,8"``."""
    ordered = sorted(set(cores))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
