"""What a trace may ask of the simulator: the documented maxima every reader enforces.

A trace is untrusted input. A value the simulator cannot meaningfully simulate (a
timestamp of 1e308 s, a job of a million GPUs, a batch of 10^20 samples) is refused when
the file is read, naming the line and column, instead of hanging or overflowing deep in
the engine. Each maximum sits far above anything in the public traces (noted beside it),
so a real trace never meets one.
"""

from __future__ import annotations

# The file as a whole. Philly, the largest public trace, is 3.4 MB and 82,247 rows.
MAX_TRACE_BYTES = 64 * 1024 * 1024
MAX_TRACE_ROWS = 1_000_000

# Seconds: arrivals (from the trace's start), durations, SLOs and Alibaba's times.
# About 1.6 years; Philly spans 109 days, Alibaba's pod list 149 days. The bound is
# also what keeps a round-based simulation (360 s rounds) of one job finite: 5e7 s is
# about 140,000 rounds.
MAX_SECONDS = 5e7
# A plain-number Philly timestamp is seconds since the Unix epoch: up to year 5138.
MAX_EPOCH_SECONDS = 1e11

# GPUs one job (Philly num_gpus, Pollux num_replicas, Gavel scale_factor, Alibaba
# num_gpu) may ask for. Philly's largest job has 128.
MAX_JOB_GPUS = 4096
# GPUs on one node of a node list (a pool file allows at most 64 per group).
MAX_NODE_GPUS = 64
# Global batch size (Pollux/Sia). The largest in the public workloads is 4,096.
MAX_BATCH_SIZE = 1 << 20
# Gavel's total_steps. The largest in Gavel's traces is about 3 million; at the
# slowest rate in its throughput file (0.35 steps/s) 1e7 steps take 2.9e7 s.
MAX_TOTAL_STEPS = 1e7
# Gavel's priority_weight (1 = normal).
MAX_PRIORITY_WEIGHT = 1e6
# Alibaba: milli-cores of one pod or node (65,536 cores, the pool file's cap on a
# node) and MiB of memory (1 PiB). The largest node has 128 cores and 1 TiB.
MAX_CPU_MILLI = 65_536_000
MAX_MEMORY_MIB = 1 << 30
# Alibaba: a GPU's share in milli-GPUs.
GPU_MILLI = 1000

# Names, job types, applications and groups: one short printable line.
MAX_NAME_CHARS = 256
