"""Property-based fuzzing (issue 8 item 6): a mutated spec is either accepted and valid,
or refused with a ``SpecError`` that names a field; a progress line is either a bounded,
typed report or nothing. Never another exception. Budgets: tests/conftest.py."""

from __future__ import annotations

import json
import math
import os
import stat
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slicebox import sdk
from slicebox.spec import JobSpec, SpecError, load_spec, parse_spec
from slicebox.store import admission

pytestmark = pytest.mark.fuzz

BASE: dict[str, Any] = {
    "name": "train", "command": ["python3", "train.py", "--lr", "0.1"],
    "env": {"OMP_PROC_BIND": "close"}, "workload": "image",
    "resources": {"gpus": 1, "cpus": 2, "memory_gib": 4, "gpu_kinds": ["H100"]},
    "dataset": {"path": "data"}, "checkpoint": {"signal": "SIGUSR1", "grace_seconds": 5},
    "priority": 3, "time_limit_seconds": 600,
}
FIELDS = [("name",), ("command",), ("command", 0), ("command", 1), ("env",), ("env", "A"),
          ("workdir",), ("workload",), ("resources",), ("resources", "gpus"),
          ("resources", "cpus"), ("resources", "memory_gib"), ("resources", "fraction"),
          ("resources", "gpu_memory_gib"), ("resources", "mig"), ("resources", "gpu_kinds"),
          ("resources", "spread"), ("dataset",), ("dataset", "path"), ("dataset", "size_gib"),
          ("dataset", "name"), ("checkpoint", "path"), ("checkpoint", "signal"),
          ("checkpoint", "grace_seconds"), ("priority",), ("time_limit_seconds",),
          ("precision",), ("sparsity",), ("extra",), ("resources", "extra")]
HOSTILE_TEXT = ["", "x\x00y", "\ud800", "\udcff", "a" * 10_000, "../" * 50, "/dev/zero",
                "/proc/self/environ", "/", "-", "LD_PRELOAD", "1", "true", "$(id)", "é"]

texts = st.one_of(st.sampled_from(HOSTILE_TEXT),
                  st.text(st.characters(exclude_categories=()), max_size=40))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([1e308, -1e308, 0.0, 2**62, 65536.0]), texts)
# Half the values are known troublemakers, so that a small budget still meets them.
TROUBLE: list[Any] = [*HOSTILE_TEXT, "ok\x00", "\ud83d", math.inf, -math.inf, math.nan, 1e308,
                      True, False, "1", "2.5", 2**63, -(2**70), None, [], {}]
hostile = st.sampled_from(TROUBLE)
values = st.one_of(hostile, st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                                         | st.dictionaries(texts, inner, max_size=4),
                                         max_leaves=12))


def _mutate(data: dict[str, Any], path: tuple[Any, ...], value: object) -> None:
    target: Any = data
    for part in path[:-1]:
        if not isinstance(target, dict) or not isinstance(target.get(part), dict | list):
            return
        target = target[part]
    last = path[-1]
    if isinstance(last, int):
        if isinstance(target, list) and last < len(target):
            target[last] = value
    elif isinstance(target, dict):
        target[last] = value


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list | tuple):
        return [n for item in value for n in _numbers(item)]
    return []


def assert_valid(spec: JobSpec) -> None:
    """What an accepted spec guarantees: every string can reach execve and SQLite, every
    number is finite and bounded, and it survives the store's JSON round trip."""
    dumped = spec.model_dump(mode="json")
    for text in _strings(dumped):
        assert "\x00" not in text
        text.encode("utf-8")  # no surrogates
        os.fsencode(text)
    assert all(math.isfinite(n) and abs(n) <= 2**62 for n in _numbers(dumped))
    assert JobSpec.model_validate(json.loads(json.dumps(dumped, allow_nan=False))) == spec


def assert_names_a_field(message: str, path: tuple[Any, ...]) -> None:
    assert "\n" not in message and message.startswith("job spec: ")
    assert str(path[0]) in message or "(a key that is not a field name)" in message or (
        "name" in message or "command" in message), message


@given(mutations=st.lists(st.tuples(st.sampled_from(FIELDS), values), min_size=1, max_size=3))
def test_a_mutated_spec_is_valid_or_refused_naming_a_field(
        mutations: list[tuple[tuple[Any, ...], object]]) -> None:
    data = json.loads(json.dumps(BASE))
    for path, value in mutations:
        _mutate(data, path, value)
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        assert_names_a_field(str(exc), mutations[0][0] if len(mutations) == 1 else ("",))
        return
    assert_valid(spec)


TEXT_FIELDS = [("command", 1), ("env", "A"), ("workdir",), ("workload",), ("dataset", "path"),
               ("checkpoint", "path"), ("command", 0)]


@given(where=st.sampled_from(TEXT_FIELDS),
       text=st.tuples(st.text(max_size=10), st.sampled_from(["\x00", "\ud800", "\udcff",
                                                             "\udfff", "\ud83d"]),
                      st.text(max_size=10)).map("".join))
def test_text_that_cannot_reach_exec_is_refused_in_every_text_field(
        where: tuple[Any, ...], text: str) -> None:
    data = json.loads(json.dumps(BASE))
    data.setdefault(where[0], {})
    _mutate(data, where, text)
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert ".".join(map(str, where)) in str(info.value)


SNIPPETS = ["\x00", '"\\0"', '"\\ud800"', "\n  - ", ": ", "[" * 40, "{", "&a ", "*a", "!!set ",
            "!!binary AAAA", "1e308", ".inf", "true", "\t", "name: x\n", "<<: *a\n", "---\n",
            "? [a]\n", "'", '"', "\ufeff", "%YAML 1.1\n"]
GOOD_YAML = ("name: train\ncommand: [python3, train.py]\nenv: {OMP_PROC_BIND: close}\n"
             "resources: {cpus: 2, memory_gib: 4}\ndataset: {path: data}\n")


@given(edits=st.lists(st.tuples(st.integers(0, len(GOOD_YAML)),
                                st.sampled_from(SNIPPETS) | st.text(max_size=8)),
                      min_size=1, max_size=4))
def test_a_mutated_job_file_is_admitted_launchable_or_refused(
        tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[int, str]]) -> None:
    root = tmp_path_factory.mktemp("job")
    (root / "data").mkdir()
    (root / "data" / "x.bin").write_bytes(b"x" * 100)
    (root / "train.py").write_text("pass\n")
    text = GOOD_YAML
    for position, snippet in sorted(edits, reverse=True):
        text = text[:position] + snippet + text[position:]
    path = root / "job.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        spec = load_spec(path)
        admitted = admission.admit(spec, cwd=root, source=str(path))
    except SpecError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))
        return
    assert_valid(admitted.spec)
    mode = os.stat(admitted.program).st_mode
    assert stat.S_ISREG(mode) and os.access(admitted.program, os.X_OK)
    assert os.path.isdir(admitted.workdir)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80),
              st.floats(allow_nan=True, allow_infinity=True),
              st.text(st.characters(exclude_categories=()), max_size=20)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=10)
payloads = st.dictionaries(st.sampled_from(["time", "samples", "quality", "loss", "key",
                                            "value", "time_ms", "metadata", "event_type"])
                           | st.text(max_size=10), json_values, max_size=6)


def assert_bounded(parsed: dict[str, Any]) -> None:
    assert parsed["source"] in ("slicebox", "mllog")
    samples, when, quality = parsed["samples"], parsed["time"], parsed["quality"]
    assert samples is None or (type(samples) is int and 0 <= samples <= 2**62)
    assert when is None or (type(when) is float and math.isfinite(when) and 0 <= when <= 1e11)
    assert quality is None or (type(quality) is float and math.isfinite(quality))
    for text in _strings(parsed):
        text.encode("utf-8")
        assert "\x00" not in text


@given(prefix=st.sampled_from([sdk.SLICEBOX_PREFIX, sdk.MLLOG_PREFIX, "[rank0]: :::SLICEBOX ",
                               ":::SLICEBOX", ""]),
       body=payloads.map(lambda p: json.dumps(p)) | st.text(st.characters(exclude_categories=()),
                                                            max_size=60))
def test_a_progress_line_is_bounded_and_typed_or_nothing(prefix: str, body: str) -> None:
    parsed = sdk.parse_report_line(prefix + body)
    if parsed is not None:
        assert_bounded(parsed)
