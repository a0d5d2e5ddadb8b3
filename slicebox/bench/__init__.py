"""Slicebox's MLPerf-style reference workloads and the suite that measures slice shapes.

Entry points:

- ``python -m slicebox.bench.run WORKLOAD ...``: one run, usable as a job's argv.
- `slicebox.bench.suite.run_suite`: workloads x slice shapes x precisions, one process each.
- `slicebox.bench.registry.train`: one run in this process.
- `slicebox.bench.tracking.log_bench_suite`: the results into MLflow (a parent run per
  invocation, a child per cell, the cells' output folders as artifacts).
- `slicebox.bench.outputs`: run folders under ``<state>/bench/`` and the merge that never
  lets an unmeasured cell replace a measured one.

Importing this package is cheap: torch loads only when a workload runs.
"""
