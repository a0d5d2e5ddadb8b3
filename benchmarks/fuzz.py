"""Fuzz the entry points untrusted input goes through, and count what happens.

    .venv/bin/python benchmarks/fuzz.py                 # 10,000 specs, 10,000 lines, 2,000 traces
    .venv/bin/python benchmarks/fuzz.py --specs 500 --lines 500 --traces 100 --launch 20

1. **Specs**: mutated job files (hostile values in every field, YAML edits, hostile
   files: FIFOs, symlinks to devices, loops, 10,000-character names) submitted exactly as
   ``slicebox submit`` does (``controller.submit_file`` into a real store, against a pool
   of this machine). Every accepted spec is then checked as the local backend would meet
   it: argv and environment (``job_environment``) encodable and within ``ARG_MAX``, the
   program found on that environment's ``PATH`` and executable, the working directory a
   folder. A sample (``--launch``) is launched for real by ``LocalBackend`` (the programs
   the mutator picks are trivial: ``true``, a ``#!/bin/sh`` script that exits 0).
2. **Progress lines**: mutated ``:::SLICEBOX`` / ``:::MLLOG`` lines through
   ``sdk.parse_report_line`` one by one, then all of them through the backend's log
   reader (``backends.logs.read_reports``).
3. **Traces**: mutated trace files of every format through ``traces.check_trace_file``
   (what ``slicebox simulate`` reads), accepted records re-checked by ``out_of_range``.

Columns: accepted, rejected (the entry point's own error: SpecError, TraceError, None for
a line), tracebacks (any other exception), hangs (past ``--timeout`` per item), invalid
accepted (accepted although the mutation made it invalid, or failing the re-check), and
for specs, launch failures (accepted but unlaunchable for a reason admission could see).
Goal: 0 in every bad column; the exit status is 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import signal
import stat
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slicebox import sdk
from slicebox.backends.env import job_environment
from slicebox.backends.logs import read_reports
from slicebox.controller import submit_file
from slicebox.placement.placer import Placer
from slicebox.pool.composition import Composition
from slicebox.pool.files import load_pool
from slicebox.sim import traces
from slicebox.spec import JobSpec, SpecError
from slicebox.store import Store

CORES = sorted(os.sched_getaffinity(0))
LOADER_ENV = ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME",
              "PYTHONSTARTUP", "PATH", "LD_BIND_NOW", "PYTHONINSPECT", "BASH_ENV"]
HOSTILE_TEXT = ["", " ", "x\x00y", "\ud800", "\udcff", "a" * 10_000, "../" * 40, "-", "é",
                "$(id)", "; rm -rf /", "\n", "\t", "1", "true", "LD_PRELOAD", "/dev/zero",
                "/proc/self/environ", "/", "/sys", "/proc", "x" * 70_000]
HOSTILE_NUMBERS: list[Any] = [0, -1, 1, 2, 3, 1.5, 0.5, 1e308, -1e308, math.inf, -math.inf,
                              math.nan, 2**63, 10**30, 65536, 4096, 1025, True, False, "1",
                              "2.0", None, [], {}, [1], {"min": 1, "max": 2}]
PROGRAMS = ["true", "/bin/true", "./ok.sh", "python3", "./noexec.sh", "./noshebang",
            "./badshebang", "./folder", "./pipe", "missing-program", "", "./loop1",
            "./zero", "./ok.sh/"]
LAUNCHABLE_PROGRAMS = {"true", "/bin/true", "./ok.sh"}  # trivial: safe to run for real
DATASETS = ["data", "data-small", "/dev/zero", "/proc", "/sys", "/", "zero", "loop1",
            "data-with-zero", "data-with-loop", "data-with-fifo", "pipe", "missing", "x" * 300]
BAD_DATASETS = {"/dev/zero", "/proc", "/sys", "/", "zero", "loop1", "data-with-zero",
                "data-with-loop", "data-with-fifo", "pipe", "missing", "x" * 300}


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(_signum: int, _frame: object) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    known_invalid: int = 0  # items the mutator knows must be refused (the oracle's share)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, column: str, example: str | None = None) -> None:
        self.counts[column] += 1
        if example is not None and len(self.examples.setdefault(column, [])) < 3:
            self.examples[column].append(example[:300])


# ---- workspace --------------------------------------------------------------------------


def make_workspace(root: Path) -> Path:
    """Files the mutated specs point at: good and bad programs, datasets, traps."""
    def script(name: str, text: str, mode: int) -> None:
        (root / name).write_text(text)
        (root / name).chmod(mode)

    script("ok.sh", "#!/bin/sh\nexit 0\n", 0o755)
    script("noexec.sh", "#!/bin/sh\nexit 0\n", 0o644)
    script("noshebang", "exit 0\n", 0o755)
    script("badshebang", "#!/nonexistent/sh\nexit 0\n", 0o755)
    (root / "train.py").write_text("pass\n")
    (root / "folder").mkdir()
    os.mkfifo(root / "pipe")
    (root / "zero").symlink_to("/dev/zero")
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    for name in ("data", "data-small", "data-with-zero", "data-with-loop", "data-with-fifo"):
        (root / name / "sub").mkdir(parents=True)
        (root / name / "a.bin").write_bytes(b"x" * 4096)
        (root / name / "sub" / "b.bin").write_bytes(b"y" * 1024)
    (root / "data-with-zero" / "z").symlink_to("/dev/zero")
    (root / "data-with-loop" / "sub" / "up").symlink_to(root / "data-with-loop")
    os.mkfifo(root / "data-with-fifo" / "sub" / "f")
    (root / "shadow").write_text("root:$6$salt$secrethash:19000:0:99999:7:::\n")
    (root / "shadow").chmod(0o600)
    pool = {"name": "fuzz", "nodes": [{"name": "local", "memory_gib": 8, "cores": {0: CORES},
                                       "gpus": [{"kind": "L4", "count": 1, "numa": 0}]}]}
    path = root / "pool.yaml"
    path.write_text(yaml.safe_dump(pool))
    return path


# ---- specs ------------------------------------------------------------------------------


@dataclass
class Mutant:
    """A job file and whether the mutation alone makes it invalid (the oracle)."""

    text: str | None  # None: the job file itself is a trap (``path``)
    path: str | None = None
    must_reject: str | None = None  # why it has to be refused, when it has to be


def base_spec(rng: random.Random) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": f"job-{rng.randrange(10**6)}",
                            "command": [rng.choice(["true", "./ok.sh", "/bin/true"]), "--x"],
                            "resources": {"cpus": 1, "memory_gib": 0.5}}
    if rng.random() < 0.5:
        spec["env"] = {"OMP_PROC_BIND": "close", "MY_SETTING": "1"}
    if rng.random() < 0.4:
        spec["dataset"] = {"path": rng.choice(["data", "data-small"])}
    if rng.random() < 0.3:
        spec["checkpoint"] = {"signal": "SIGUSR1", "grace_seconds": 5, "path": "/tmp/ckpt"}
    if rng.random() < 0.2:
        spec["workdir"] = "."
    return spec


def _hostile(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.4:
        return rng.choice(HOSTILE_TEXT)
    if roll < 0.8:
        return rng.choice(HOSTILE_NUMBERS)
    return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x110000)]))
                   for _ in range(rng.randrange(1, 12)))


def mutate_spec(rng: random.Random) -> Mutant:
    data = base_spec(rng)
    # Why the spec must be refused, per place mutated: a later mutation of the same place
    # replaces the earlier one's verdict.
    must: dict[str, str | None] = {}
    for _ in range(rng.randrange(1, 3)):
        kind = rng.random()
        if kind < 0.15:
            program = rng.choice(PROGRAMS)
            data["command"][0] = program
            bad = program not in LAUNCHABLE_PROGRAMS and program != "python3"
            must["command.0"] = f"program {program!r}" if bad else None
        elif kind < 0.3:
            name = rng.choice(LOADER_ENV + ["OK_NAME", "1BAD", "A=B", "SLICEBOX_X", "a-b"])
            value = rng.choice(["x", "/tmp", _hostile(rng)])
            data.setdefault("env", {})[name] = value
            if name in LOADER_ENV or name in ("1BAD", "A=B", "SLICEBOX_X", "a-b"):
                must[f"env.{name}"] = f"env name {name!r}"
            else:
                # (a float may read back as text: "Infinity", "1e+308" are YAML strings)
                bad = not _clean(value) if isinstance(value, str) else (
                    not isinstance(value, float))
                must[f"env.{name}"] = f"env value {value!r}" if bad else None
        elif kind < 0.42:
            dataset = rng.choice(DATASETS)
            data["dataset"] = {"path": dataset, "size_gib": rng.choice([0, 1, None, 1e308])}
            if data["dataset"]["size_gib"] is None:
                del data["dataset"]["size_gib"]
            must["dataset"] = f"dataset {dataset!r}" if dataset in BAD_DATASETS else (
                "size_gib 1e308" if data["dataset"].get("size_gib") == 1e308 else None)
        elif kind < 0.7:
            where = rng.choice(["resources.cpus", "resources.memory_gib", "resources.gpus",
                                "resources.fraction", "resources.gpu_memory_gib",
                                "priority", "time_limit_seconds", "checkpoint.grace_seconds",
                                "name", "command.1", "workdir", "workload", "checkpoint.path",
                                "checkpoint.signal", "precision", "resources.spread",
                                "resources.gpu_kinds", "unknown_field"])
            value = _hostile(rng)
            _set(data, where, value)
            must[where] = f"{where} = {value!r}" if _surely_bad(where, value) else None
            if where == "command.1" and len(data["command"]) > 2:
                must[where] = None  # appended, not replaced: the verdict is about argv[1]
        else:
            break  # an unmutated-field spec: should be accepted
    text = json.dumps(data, ensure_ascii=rng.random() < 0.5) if rng.random() < 0.5 else (
        _safe_dump(data))
    if rng.random() < 0.25:
        text, must["text"] = _edit_text(rng, text)
    return Mutant(text, must_reject=next((why for why in must.values() if why), None))


def _set(data: dict[str, Any], where: str, value: Any) -> None:
    parts = where.split(".")
    target: Any = data
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    last = parts[-1]
    if last.isdigit():
        target = data["command"]
        if int(last) < len(target):
            target[int(last)] = value
        else:
            target.append(value)
    else:
        target[last] = value


def _clean(value: Any) -> bool:
    return isinstance(value, str) and "\x00" not in value and not any(
        0xD800 <= ord(c) <= 0xDFFF for c in value) and len(value.encode("utf-8",
                                                                       "surrogatepass")) <= 65536


NUMERIC = ("resources.cpus", "resources.memory_gib", "resources.gpus", "resources.fraction",
           "resources.gpu_memory_gib", "priority", "time_limit_seconds",
           "checkpoint.grace_seconds")


def _surely_bad(where: str, value: Any) -> bool:
    """Values no field may take (the oracle: not exhaustive, never wrong). A float written
    as JSON can read back as text ("1e+308", "Infinity" are YAML strings), so for text
    fields only real text problems count."""
    if where == "unknown_field":
        return True
    if isinstance(value, bool) or value is None and where not in (
            "resources.fraction", "resources.gpu_memory_gib", "time_limit_seconds",
            "workdir", "workload", "checkpoint.path"):
        return True
    if isinstance(value, str):
        return not _clean(value) or where in NUMERIC
    if where not in NUMERIC:
        return False
    if isinstance(value, float) and (not math.isfinite(value) or abs(value) >= 1e300):
        return True
    return isinstance(value, int) and abs(value) >= 2**63


def _safe_dump(data: dict[str, Any]) -> str:
    try:
        return yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return json.dumps(data)


YAML_SNIPPETS = ["\x00", "[" * 600, "{a: " * 600, "&a ", "*a", "!!python/object:os.system ",
                 "\ufeff", "\nname: dup\n", "\n? [a, b]\n: 1\n", "---\n", '"\\0"', "\t",
                 "!!binary AAAA", "\u2028", "%TAG ! x\n"]


def _edit_text(rng: random.Random, text: str) -> tuple[str, str | None]:
    """A YAML edit; a few are certain to make the file invalid (appended as a key)."""
    roll = rng.random()
    if roll < 0.2:
        return text.rstrip("\n") + "\nextra: " + "[" * 600 + "]" * 600 + "\n", \
            "nesting 600 deep" if not text.lstrip().startswith("{") else "JSON + block key"
    if roll < 0.3:
        return text.rstrip("\n") + "\nname: again\n", "a duplicate or misplaced key"
    snippet = rng.choice(YAML_SNIPPETS)
    at = rng.randrange(len(text) + 1)
    return text[:at] + snippet + text[at:], None


def trap_file(rng: random.Random, root: Path) -> Mutant:
    """A job file that is itself hostile."""
    choice = rng.randrange(8)
    paths = [str(root / "pipe"), str(root / "zero"), str(root / "loop1"),
             str(root / ("j" * 10_000)), str(root) + "/job\x00.yaml", str(root) + "/\ud800",
             str(root / "folder"), str(root / "shadow")]
    return Mutant(None, path=paths[choice], must_reject=f"trap {choice}")


@dataclass
class SpecRun:
    tally: Tally
    store: Store
    accepted: list[str]


def run_specs(count: int, seed: int, timeout: float, root: Path, pool_file: Path) -> SpecRun:
    rng = random.Random(seed)
    store = Store.open(root / "state")
    pool = load_pool(pool_file)
    placer = Placer(pool)
    tally, accepted = Tally(), []
    job_file = root / "job.yaml"
    for i in range(count):
        mutant = trap_file(rng, root) if rng.random() < 0.03 else mutate_spec(rng)
        if mutant.must_reject:
            tally.known_invalid += 1
        if mutant.text is not None:
            job_file.write_bytes(mutant.text.encode("utf-8", "surrogatepass"))
            path = str(job_file)
        else:
            path = mutant.path or ""
        try:
            with time_limit(timeout):
                job_id = submit_file(store, pool, placer, path, cwd=root)
        except SpecError as exc:
            tally.add("rejected")
            message = str(exc)
            if "\n" in message:
                tally.add("invalid accepted", f"#{i}: multi-line error {message!r}")
            if "secrethash" in message:
                tally.add("invalid accepted", f"#{i}: a secret echoed: {message!r}")
            continue
        except Hang:
            tally.add("hangs", f"#{i}: {path!r} {mutant.text!r}"[:300])
            continue
        except Exception:  # noqa: BLE001 - counting them is the point
            tally.add("tracebacks", f"#{i}: {traceback.format_exc(limit=3)[-300:]}")
            continue
        tally.add("accepted")
        accepted.append(job_id)
        if mutant.must_reject:
            tally.add("invalid accepted", f"#{i}: {mutant.must_reject}")
    return SpecRun(tally, store, accepted)


# ---- launchability --------------------------------------------------------------------


def composition_for(job_id: str) -> Composition:
    return Composition.on_node(job_id, "local", (), (CORES[0],), 0.5)


def cannot_launch(spec: JobSpec, workdir: str, job_id: str) -> str | None:
    """Why the local backend could not start ``spec``, checked independently of admission
    (what Popen and execvpe will meet); None when it can."""
    base = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                   os.environ.get("PATH", "")])}
    env = job_environment(base, job_id, 1, spec, composition_for(job_id))
    try:
        argv = [os.fsencode(a) for a in spec.command]
        envb = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    except (UnicodeError, ValueError) as exc:
        return f"not encodable: {exc}"
    if any(b"\x00" in s for s in argv + envb) or any(b"=" in os.fsencode(k) for k in env):
        return "NUL in argv/env or '=' in a name"
    if any(len(s) >= 128 * 1024 for s in argv + envb):
        return "one string over MAX_ARG_STRLEN"
    if sum(len(s) + 1 + 8 for s in argv + envb) > os.sysconf("SC_ARG_MAX") // 2:
        return "argv + env near ARG_MAX"
    if not os.path.isdir(workdir):
        return f"workdir {workdir!r} is not a folder"
    program = spec.command[0]
    dirs = [""] if "/" in program else env.get("PATH", "").split(":")
    for folder in dirs:
        candidate = os.path.join(workdir, folder, program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            with open(candidate, "rb") as handle:
                head = handle.read(128)
            if head.startswith(b"\x7fELF"):
                return None
            if head.startswith(b"#!"):
                interpreter = head[2:].split(b"\n")[0].split()[0].decode()
                return None if os.access(interpreter, os.X_OK) else f"no {interpreter}"
            return f"{candidate} is not an executable format"
    return f"program {program!r} not found"


def run_launches(store: Store, accepted: list[str], sample: int, root: Path,
                 tally: Tally) -> int:
    """Launch up to ``sample`` accepted trivial jobs for real; the number launched."""
    from slicebox.backends.local import LocalBackend

    backend = LocalBackend(root / "state")
    launched = 0
    for job_id in accepted:
        if launched >= sample:
            break
        job = store.job(job_id)
        if job.spec.command[0] not in LAUNCHABLE_PROGRAMS:
            continue
        launched += 1
        try:
            backend.launch(job, composition_for(job_id))
        except Exception as exc:  # noqa: BLE001 - LaunchError or worse: both count
            tally.add("launch failures", f"{job_id}: {exc}")
            continue
        deadline = time.monotonic() + 30
        record = None
        while time.monotonic() < deadline:
            backend.poll()
            record = backend.exit_record_for(job_id, job.attempt)
            if record is not None:
                break
            time.sleep(0.02)
        if record is None:
            tally.add("launch failures", f"{job_id}: no exit within 30 s")
        elif record.exit_code != 0 or record.error:
            tally.add("launch failures", f"{job_id}: exit {record.exit_code} {record.error}")
    with contextlib.suppress(Exception):
        backend.poll()
        backend.close()
    return launched


# ---- progress lines -------------------------------------------------------------------


def mutate_line(rng: random.Random) -> str:
    payload: dict[str, Any] = {"time": time.time(), "samples": rng.randrange(10**6),
                               "quality": rng.random(), "loss": rng.random()}
    if rng.random() < 0.3:
        payload = {"key": rng.choice(["eval_accuracy", "samples_count", "run_start"]),
                   "value": rng.random(), "time_ms": int(time.time() * 1000),
                   "metadata": {"samples_count": rng.randrange(10**6)}}
        prefix = sdk.MLLOG_PREFIX
    else:
        prefix = rng.choice([sdk.SLICEBOX_PREFIX, "[rank0]: " + sdk.SLICEBOX_PREFIX])
    for _ in range(rng.randrange(0, 3)):
        key = rng.choice(list(payload) + ["extra", "time", "samples", "quality", "value"])
        payload[key] = rng.choice([*HOSTILE_NUMBERS, 10**26, -(10**26), 2**62, 2**62 + 1,
                                   "x", "\ud800", "a\x00b", [1], {"a": [1]}, 1e400])
    text = json.dumps(payload, allow_nan=True)
    roll = rng.random()
    if roll < 0.1:
        text = "[" * rng.randrange(1, 200_000) + text
    elif roll < 0.2:
        at = rng.randrange(len(text) + 1)
        text = text[:at] + rng.choice(["}", "\"", "\\", "\x00", "9" * 5000, "NaN", "\ud800"]) \
            + text[at:]
    elif roll < 0.25:
        text = text.replace("1", "9" * rng.randrange(1, 6000), 1)
    return prefix + text


def bounded(parsed: dict[str, Any]) -> str | None:
    """Independent re-check of the parser's contract; why a report is out of bounds."""
    samples, when, quality = parsed.get("samples"), parsed.get("time"), parsed.get("quality")
    if samples is not None and (type(samples) is not int or not 0 <= samples <= 2**62):
        return f"samples {samples!r}"
    for name, value in (("time", when), ("quality", quality)):
        if value is not None and (type(value) is not float or not math.isfinite(value)):
            return f"{name} {value!r}"
    if when is not None and not 0 <= when <= 1e11:
        return f"time {when!r}"
    try:
        json.dumps(parsed, allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeError) as exc:
        return f"not storable: {exc}"
    return None


def run_lines(count: int, seed: int, timeout: float, root: Path) -> Tally:
    rng = random.Random(seed + 1)
    tally = Tally()
    lines = [mutate_line(rng) for _ in range(count)]
    expected = 0
    for i, line in enumerate(lines):
        try:
            with time_limit(timeout):
                parsed = sdk.parse_report_line(line)
        except Hang:
            tally.add("hangs", f"#{i}: {line[:200]!r}")
            continue
        except Exception:  # noqa: BLE001
            tally.add("tracebacks", f"#{i}: {traceback.format_exc(limit=2)[-300:]}")
            continue
        if parsed is None:
            tally.add("rejected")
            continue
        tally.add("accepted")
        if parsed["samples"] is not None or parsed["quality"] is not None:
            expected += 1
        why = bounded(parsed)
        if why:
            tally.add("invalid accepted", f"#{i}: {why}: {line[:200]!r}")
    # The whole log through the backend's reader, as a running job's would be.
    log = root / "progress.log"
    log.write_bytes(b"".join(line.encode("utf-8", "surrogatepass") + b"\n" for line in lines))
    reports, offset, read = [], 0, 0
    try:
        with time_limit(timeout * 20):
            while offset < log.stat().st_size:
                batch, offset = read_reports(log, offset)
                reports.extend(batch)
                read += 1
                if read > count + 10:
                    raise Hang
    except Hang:
        tally.add("hangs", "read_reports did not reach the end of the log")
    except Exception:  # noqa: BLE001
        tally.add("tracebacks", f"read_reports: {traceback.format_exc(limit=2)[-300:]}")
    for report in reports:
        why = bounded({"samples": report.samples, "time": report.time,
                       "quality": report.quality})
        if why:
            tally.add("invalid accepted", f"read_reports: {why}")
    return tally


# ---- traces -----------------------------------------------------------------------------


TRACE_SAMPLES = (
    ("philly.csv", "timestamp,duration,num_gpus,gpu_time,cluster\n"
     "2017-10-09 07:01:55,66.0,1,66.0,11cb48\n1507532515,10,2,20,11cb48\n", ","),
    ("philly-workload-1.csv", "name,time,application,num_replicas,batch_size\n"
     "cifar10-1,0,cifar10,2,256\nbert-2,30,bert,4,12\n", ","),
    ("fuzz.trace", "ResNet-50 (batch size 64)\tpython3 main.py\timagenet\t--n\t1\t2931\t1\t1"
     "\t-1.000000\t0\nA3C\tpython3 a.py\ta\t--n\t0\t500\t1\t1\t-1\t7\n", "\t"),
    ("openb_pod_list_default.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,"
     "pod_phase,creation_time,deletion_time,scheduled_time\n"
     "openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0\n", ","),
    ("openb_node_list_gpu_node.csv", "sn,cpu_milli,memory_mib,gpu,model\n"
     "openb-node-0000,64000,262144,2,P100\nopenb-node-0001,32000,262144,0,\n", ","),
)
TRACE_HOSTILE = ["nan", "inf", "-inf", "1e308", "1e309", "-1", "0", "1000000", "9" * 400,
                 "", "abc", "\x00", '"', "1_000", "2017-13-45 99:99:99", "a" * 300, "\t", ","]


def mutate_trace(rng: random.Random, folder: Path) -> Path:
    name, text, delimiter = rng.choice(TRACE_SAMPLES)
    lines = text.rstrip("\n").split("\n")
    for _ in range(rng.randrange(1, 4)):
        row = rng.randrange(len(lines))
        fields = lines[row].split(delimiter)
        fields[rng.randrange(len(fields))] = rng.choice(
            TRACE_HOSTILE + [repr(rng.uniform(-1e6, 1e6)), str(rng.randrange(-10**20, 10**20))])
        lines[row] = delimiter.join(fields)
    path = folder / name
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
    return path


def run_traces(count: int, seed: int, timeout: float, root: Path) -> Tally:
    rng = random.Random(seed + 2)
    tally = Tally()
    folder = root / "traces"
    folder.mkdir()
    for i in range(count):
        path = mutate_trace(rng, folder)
        try:
            with time_limit(timeout):
                result = traces.check_trace_file(path)
        except traces.TraceError:
            tally.add("rejected")
            continue
        except Hang:
            tally.add("hangs", f"#{i}: {path.read_text(errors='replace')[:200]!r}")
            continue
        except Exception:  # noqa: BLE001
            tally.add("tracebacks", f"#{i}: {traceback.format_exc(limit=2)[-300:]}")
            continue
        tally.add("accepted")
        records: tuple[Any, ...] = tuple(getattr(result, "jobs", None)
                                         or getattr(result, "nodes", None) or ())
        problems = [p for p in map(traces.out_of_range, records) if p]
        if problems:
            tally.add("invalid accepted", f"#{i}: {problems[0]}")
    return tally


# ---- report -----------------------------------------------------------------------------

COLUMNS = ("accepted", "rejected", "tracebacks", "hangs", "invalid accepted",
           "launch failures")
BAD = COLUMNS[2:]


def report(rows: list[tuple[str, Tally]]) -> int:
    print(f"{'':16s}" + "".join(f"{c:>18s}" for c in COLUMNS))
    bad = 0
    for name, tally in rows:
        cells = []
        for column in COLUMNS:
            if column == "launch failures" and name != "specs":
                cells.append(f"{'-':>18s}")
                continue
            cells.append(f"{tally.counts[column]:>18,}")
            if column in BAD:
                bad += tally.counts[column]
        print(f"{name:16s}" + "".join(cells))
    for name, tally in rows:
        for column, examples in tally.examples.items():
            for example in examples:
                print(f"  {name} / {column}: {example}")
    print("goal: 0 in every bad column:", "met" if bad == 0 else f"NOT met ({bad})")
    return 0 if bad == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--traces", type=int, default=2_000)
    parser.add_argument("--launch", type=int, default=100, help="accepted specs to launch")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per item")
    args = parser.parse_args(argv)
    # A regression that reads /dev/zero must fail this run, not the machine.
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slicebox-fuzz-") as tmp:
        root = Path(tmp)
        pool_file = make_workspace(root)
        spec_run = run_specs(args.specs, args.seed, args.timeout, root, pool_file)
        tally = spec_run.tally
        for job_id in spec_run.accepted:
            job = spec_run.store.job(job_id)
            why = cannot_launch(job.spec, job.workdir or str(root), job_id)
            if why:
                tally.add("launch failures", f"{job_id}: {why}")
            if job.spec.dataset is not None and job.spec.dataset.path is not None:
                mode = os.stat(job.spec.dataset.path).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    tally.add("invalid accepted", f"{job_id}: dataset {job.spec.dataset.path}")
        spec_time = time.perf_counter() - started
        launched = run_launches(spec_run.store, spec_run.accepted, args.launch, root, tally)
        lines = run_lines(args.lines, args.seed, args.timeout, root)
        trace_tally = run_traces(args.traces, args.seed, args.timeout, root)
        spec_run.store.close()
    print(f"{args.specs:,} specs ({spec_time:.0f} s; {launched} accepted jobs launched for "
          f"real), {args.lines:,} progress lines, {args.traces:,} traces; seed {args.seed}; "
          f"{time.perf_counter() - started:.0f} s in all; {tally.known_invalid:,} specs were "
          "invalid by construction (each must be refused)")
    return report([("specs", tally), ("progress lines", lines), ("traces", trace_tally)])


if __name__ == "__main__":
    sys.exit(main())
