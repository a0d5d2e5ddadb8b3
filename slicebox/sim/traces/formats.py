"""`read_trace`: one entry point that picks the reader by format name or by guess.

The CLI's `--trace FILE` goes through here, so an unknown or unguessable format must
say which formats exist rather than fail inside the wrong reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from slicebox.sim.traces import alibaba, csvrows, gavel, model, philly, pollux

Reader = Callable[..., model.TraceReadResult]

FORMATS: dict[str, Reader] = {
    "philly": philly.read_philly,
    "pollux": pollux.read_pollux,
    "gavel": gavel.read_gavel,
    "alibaba": alibaba.read_alibaba_pods,
}
# Names people reach for: the paper or the data set rather than our short name.
ALIASES: dict[str, str] = {
    "sia": "pollux",
    "alibaba-gpu-2023": "alibaba",
    "fgd": "alibaba",
}


def valid_formats() -> str:
    """The format names (and aliases) to quote in an error message."""
    aliases = ", ".join(f"{alias} (= {target})" for alias, target in sorted(ALIASES.items()))
    return f"{', '.join(sorted(FORMATS))}; aliases: {aliases}"


def read_trace(
    path: str | os.PathLike[str], format: str | None = None, skip_bad_lines: bool = False
) -> model.TraceReadResult:
    """Read a job trace in any known format, guessing it when `format` is None.

    The guess looks at the file name first (`*.trace` is Gavel, `openb_pod_list_*` is
    Alibaba, `philly-workload-*` is Pollux/Sia, `philly*.csv` is Philly), then at
    the header. Node lists are not job traces: they are read with
    `alibaba.read_alibaba_nodes`, and handing one here says so.
    """
    name = os.fspath(path)
    if format is None:
        format = guess_format(name)
    key = ALIASES.get(format.lower(), format.lower())
    reader = FORMATS.get(key)
    if reader is None:
        raise model.TraceError(
            name, 0, f"unknown trace format {csvrows.shorten(format)}; valid: {valid_formats()}"
        )
    return reader(name, skip_bad_lines=skip_bad_lines)


def guess_format(path: str | os.PathLike[str]) -> str:
    """The format name of a trace file, from its name or else its header."""
    name = os.fspath(path)
    base = os.path.basename(name).lower()
    if base.startswith("openb_node_list"):
        raise model.TraceError(
            name, 1, "this is a node list (a pool), not a job trace: read it as a pool"
        )
    by_name = _format_from_name(base)
    if by_name is not None:
        return by_name
    by_header = _format_from_header(name)
    if by_header is not None:
        return by_header
    raise model.TraceError(
        name,
        1,
        f"cannot tell the trace format from the file name or header; "
        f"pass a format, one of: {valid_formats()}",
    )


def _format_from_name(base: str) -> str | None:
    if base.endswith(".trace"):
        return "gavel"
    if base.startswith("openb_pod_list"):
        return "alibaba"
    if base.startswith("philly-workload"):
        return "pollux"
    if base.startswith("philly") and base.endswith(".csv"):
        return "philly"
    return None


# The columns that tell each headed format apart (a subset of each reader's needs).
_HEADER_SIGNS = {
    "alibaba": {"cpu_milli", "num_gpu", "gpu_milli"},
    "pollux": {"application", "num_replicas", "batch_size"},
    "philly": {"timestamp", "duration", "num_gpus"},
}


def _format_from_header(name: str) -> str | None:
    # The same guarded read as the readers': a FIFO or device must not hang the guess.
    first = csvrows.read_text(name).partition("\n")[0]
    if not first.strip():
        raise model.TraceError(name, 1, "empty file: no header and no rows")
    if first.count("\t") == len(gavel.FIELDS) - 1:
        return "gavel"  # Gavel's lines are tab-separated with no header
    columns = {cell.strip() for cell in first.split(",")}
    for format_name, signs in _HEADER_SIGNS.items():
        if signs <= columns:
            return format_name
    return None
