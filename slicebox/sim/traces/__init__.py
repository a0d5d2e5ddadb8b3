"""Readers for public cluster traces, each returning typed, frozen records.

    from slicebox.sim import traces
    result = traces.read_trace("data/traces/philly/philly.csv")   # format guessed
    result.jobs[0]            # TraceJob(id='philly-31566', arrival=0.0, num_gpus=8, ...)
    nodes = traces.read_alibaba_nodes(traces.trace_path(
        "alibaba-gpu-2023/openb_node_list_gpu_node.csv")).nodes

Bad input raises `TraceError` ("file:line: reason", an `InputError`); with
`skip_bad_lines=True` the readers skip bad rows and count them in the result instead.
Values the simulator cannot simulate (non-finite, negative, above the maxima in
`limits`) are bad input, and so is a path that is not a regular file or is too big.
The formats and their sources are described in `data/traces/README.md`.
"""

from slicebox.sim.traces.alibaba import read_alibaba_nodes, read_alibaba_pods
from slicebox.sim.traces.check import check_trace_file, out_of_range
from slicebox.sim.traces.formats import FORMATS, guess_format, read_trace
from slicebox.sim.traces.gavel import read_gavel
from slicebox.sim.traces.model import (
    NodeReadResult,
    TraceError,
    TraceJob,
    TraceNode,
    TraceReadResult,
)
from slicebox.sim.traces.paths import trace_path, traces_dir
from slicebox.sim.traces.philly import read_philly
from slicebox.sim.traces.pollux import read_pollux
from slicebox.sim.traces.synthetic import synthesize

__all__ = [
    "FORMATS",
    "NodeReadResult",
    "TraceError",
    "TraceJob",
    "TraceNode",
    "TraceReadResult",
    "check_trace_file",
    "guess_format",
    "out_of_range",
    "read_alibaba_nodes",
    "read_alibaba_pods",
    "read_gavel",
    "read_philly",
    "read_pollux",
    "read_trace",
    "synthesize",
    "trace_path",
    "traces_dir",
]
