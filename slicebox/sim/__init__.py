"""Trace-driven simulation: the same policies and placement as the live system, on a
simulated clock.

    from slicebox.sim import api
    result = api.simulate("data/traces/pollux-workloads/philly-workload-1.csv",
                          "sia-64", "slicebox")
    result.metrics.avg_jct

Submodules: ``traces`` (readers), ``workload_models`` (speed data), ``workloads``
(trace records -> simulated jobs), ``speed`` (how fast a job runs on a slice),
``engine`` (the event loop) with ``clock`` (simulated time and events), ``accounting``
(each job's progress and view) and ``placement`` (the live placer on one long-lived
``PoolState``: the simulator has no placement of its own), ``metrics`` / ``report``
(what came out), ``pools`` (the clusters the published results used),
``allocation_curve`` (FGD's method, through the same placement round).
This package imports nothing eagerly so that reading a trace stays cheap.
"""
