"""Issue 8: values that passed validation and then crashed the launcher (NUL, surrogates),
or that were silently coerced or unbounded (loose types, infinite sizes)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from slicebox.errors import InputError
from slicebox.spec import SpecError, parse_spec

from .helpers import GOOD, Submitter

# The repro, byte for byte, as written by
#   printf 'name: p\ncommand: [python, -c, pass]\nenv: {A: "x\\0y"}\n'
PRINTF_REPRO = b'name: p\ncommand: [python, -c, pass]\nenv: {A: "x\\0y"}\n'
BASE = {"name": "p", "command": ["python3", "-c", "pass"]}


@pytest.fixture()
def sub(tmp_path: Path) -> Submitter:
    return Submitter(tmp_path)


def rejected(data: dict[str, object]) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return str(info.value)


def test_spec_error_is_an_input_error() -> None:
    assert issubclass(SpecError, InputError)


def test_nul_in_an_env_value_from_the_printf_repro(sub: Submitter) -> None:
    message = sub.reject(PRINTF_REPRO)
    assert "env.A: contains a NUL character" in message


@pytest.mark.parametrize(("data", "field"), [
    ({"env": {"A": "x\x00y"}}, "env.A"),
    ({"command": ["python3", "-c", "pass\x00"]}, "command.2"),
    ({"checkpoint": {"path": "/tmp/ck\x00pt"}}, "checkpoint.path"),
    ({"workdir": "/tmp\x00"}, "workdir"),
    ({"dataset": {"path": "data\x00"}}, "dataset.path"),
    ({"workload": "w\x00"}, "workload"),
    ({"checkpoint": {"signal": "SIGTERM\x00"}}, "checkpoint.signal"),
])
def test_nul_anywhere_is_refused_naming_the_field(data: dict[str, object], field: str) -> None:
    message = rejected({**BASE, **data})
    assert f"{field}: contains a NUL character" in message


@pytest.mark.parametrize(("data", "field"), [
    ({"env": {"A": "x\ud800"}}, "env.A"),
    ({"env": {"A": "\udcff"}}, "env.A"),  # one os.fsencode would accept: SQLite would not
    ({"command": ["python3", "\udfff"]}, "command.1"),
    ({"checkpoint": {"path": "/tmp/\ud83d"}}, "checkpoint.path"),
    ({"workdir": "/tmp/\udc80"}, "workdir"),
    ({"dataset": {"path": "\ud800"}}, "dataset.path"),
    ({"workload": "w\ud800"}, "workload"),
])
def test_unpaired_surrogates_are_refused_naming_the_field(data: dict[str, object], field: str
                                                          ) -> None:
    message = rejected({**BASE, **data})
    # pydantic's own string check may see it first: either way, the field is named
    assert f"{field}: contains the unpaired surrogate U+D" in message or (
        f"{field}: Input should be a valid string" in message)
    message.encode("utf-8")  # and the message itself can be printed


def test_surrogate_escape_in_a_yaml_file_is_refused(sub: Submitter) -> None:
    message = sub.reject(GOOD + 'env: {A: "x\\ud800"}\n')
    assert "env" in message or "escape" in message


def test_nul_or_surrogate_in_an_env_name_is_refused() -> None:
    for name in ("A\x00", "\ud800"):
        assert "env" in rejected({**BASE, "env": {name: "x"}})


@pytest.mark.parametrize(("resources", "field"), [
    ({"cpus": True}, "resources.cpus"),
    ({"cpus": "1"}, "resources.cpus"),
    ({"cpus": 1.0}, "resources.cpus"),
    ({"memory_gib": "2"}, "resources.memory_gib"),
    ({"memory_gib": True}, "resources.memory_gib"),
    ({"gpus": True}, "resources.gpus"),
    ({"gpus": "1"}, "resources.gpus"),
    ({"gpus": {"min": "1", "max": 2}}, "resources.gpus: min"),
    ({"fraction": "0.5", "gpus": 1}, "resources.fraction"),
])
def test_loose_types_are_refused(resources: dict[str, object], field: str) -> None:
    message = rejected({**BASE, "resources": resources})
    assert f"{field}" in message


@pytest.mark.parametrize(("data", "field"), [
    ({"priority": True}, "priority"),
    ({"priority": "5"}, "priority"),
    ({"time_limit_seconds": "60"}, "time_limit_seconds"),
    ({"checkpoint": {"grace_seconds": "5"}}, "checkpoint.grace_seconds"),
])
def test_loose_types_outside_resources_are_refused(data: dict[str, object], field: str) -> None:
    assert f"{field}: " in rejected({**BASE, **data})


def test_numbers_are_not_text() -> None:  # refused before too; kept so it stays so
    for data, field in (({"command": ["python3", 1]}, "command.1"), ({"env": {"A": 1}}, "env.A"),
                        ({"env": {"A": True}}, "env.A"), ({"name": 5}, "name")):
        assert f"{field}: " in rejected({**BASE, **data})


def test_loose_types_in_a_yaml_file(sub: Submitter) -> None:
    assert "resources.cpus" in sub.reject(GOOD + "resources: {cpus: true}\n")
    assert "resources.cpus" in sub.reject(GOOD + 'resources: {cpus: "1"}\n')
    assert "command" in sub.reject("name: a\ncommand: !!set {python3: null}\n")


def _with(where: tuple[str | None, str], value: object) -> dict[str, object]:
    parent, field = where
    if parent is None:
        return {**BASE, field: value}
    extra: dict[str, object] = {"gpus": 1} if parent == "resources" else {}
    if parent == "dataset":
        extra = {"name": "cached"}
    return {**BASE, parent: {**extra, field: value}}


@pytest.mark.parametrize("value", [math.inf, 1e308])
@pytest.mark.parametrize("where", [("resources", "gpu_memory_gib"), ("dataset", "size_gib")])
def test_infinite_or_huge_sizes_are_refused(value: float, where: tuple[str, str]) -> None:
    assert f"{where[0]}.{where[1]}" in rejected(_with(where, value))


def test_every_float_field_is_finite_and_bounded() -> None:
    fields: list[tuple[str | None, str]] = [
        ("resources", "gpu_memory_gib"), ("dataset", "size_gib"), ("resources", "memory_gib"),
        ("resources", "fraction"), (None, "time_limit_seconds"),
        ("checkpoint", "grace_seconds")]
    for where in fields:
        for value in (math.inf, -math.inf, math.nan, 1e308, -1e308, 10**400):
            name = f"{where[0]}.{where[1]}" if where[0] else where[1]
            assert name in rejected(_with(where, value)), (where, value)


def test_infinite_sizes_in_a_yaml_file(sub: Submitter) -> None:
    assert "dataset.size_gib" in sub.reject(GOOD + "dataset: {name: d, size_gib: .inf}\n")
    assert "dataset.size_gib" in sub.reject(GOOD + "dataset: {name: d, size_gib: 1e308}\n")
    assert "resources.gpu_memory_gib" in sub.reject(
        GOOD + "resources: {gpus: 1, gpu_memory_gib: .inf}\n")


def test_argv_too_large_for_exec_is_refused() -> None:
    big = "x" * 60_000
    message = rejected({**BASE, "command": ["python3", *[big] * 10]})
    assert "command and env are" in message and "at most" in message
    assert "command.1" in rejected({**BASE, "command": ["python3", "x" * 70_000]})


def test_an_ordinary_spec_still_parses_and_ints_are_valid_floats() -> None:
    spec = parse_spec({**BASE, "env": {"OMP_PROC_BIND": "close"},
                       "resources": {"cpus": 2, "memory_gib": 3}})
    assert spec.resources.memory_gib == 3.0 and spec.env == {"OMP_PROC_BIND": "close"}
