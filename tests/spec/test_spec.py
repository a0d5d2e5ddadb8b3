from pathlib import Path

import pytest

from slicebox.spec import Demand, SpecError, load_spec, parse_spec

GOOD = {"name": "digits", "command": ["python", "-m", "slicebox.bench.run", "image"],
        "resources": {"gpus": 1, "gpu_kinds": ["h100"], "cpus": 2, "memory_gib": 4}}


def rejected(data: dict) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return str(info.value)


def test_valid_spec_normalises_kind_names() -> None:
    spec = parse_spec(GOOD)
    assert spec.resources.gpu_kinds == ("H100",)
    assert Demand.from_spec(spec) == Demand(gpus=1, max_gpus=1, kinds=("H100",), cpus=2,
                                            memory_gib=4)


def test_misspelt_field_is_named() -> None:
    assert "resources.cpu: unknown field" in rejected({**GOOD, "resources": {"cpu": 2}})


def test_negative_count_is_named() -> None:
    message = rejected({**GOOD, "resources": {"gpus": -2}})
    assert "resources.gpus" in message and "-2" in message


def test_unknown_kind_lists_valid_ones() -> None:
    message = rejected({**GOOD, "resources": {"gpus": 1, "gpu_kinds": ["Z100"]}})
    assert "resources.gpu_kinds" in message and "'Z100'" in message and "H100" in message


@pytest.mark.parametrize("command", ["python train.py; rm -rf /", "echo $HOME", "a | b",
                                     "python `whoami`", "run > out"])
def test_command_string_with_shell_metacharacters_is_rejected(command: str) -> None:
    message = rejected({**GOOD, "command": command})
    assert message.startswith("job spec: command:") and "metacharacter" in message


def test_plain_command_string_becomes_argv() -> None:
    spec = parse_spec({**GOOD, "command": "python train.py --lr=0.1"})
    assert spec.command == ("python", "train.py", "--lr=0.1")


def test_fraction_and_mig_need_one_gpu() -> None:
    assert "exactly one GPU" in rejected({**GOOD, "resources": {"gpus": 2, "fraction": 0.5}})
    assert "either fraction or mig" in rejected(
        {**GOOD, "resources": {"gpus": 1, "fraction": 0.5, "mig": "1g.10gb"}})


def test_elastic_bounds() -> None:
    spec = parse_spec({**GOOD, "resources": {"gpus": {"min": 1, "max": 4}}})
    assert (spec.resources.min_gpus, spec.resources.max_gpus) == (1, 4)
    assert "min (4) is larger than max (2)" in rejected(
        {**GOOD, "resources": {"gpus": {"min": 4, "max": 2}}})


def test_env_cannot_override_composition() -> None:
    assert "env" in rejected({**GOOD, "env": {"CUDA_VISIBLE_DEVICES": "0"}})


def test_checkpoint_signal_must_be_catchable() -> None:
    assert "checkpoint.signal" in rejected({**GOOD, "checkpoint": {"signal": "SIGKILL"}})
    assert parse_spec({**GOOD, "checkpoint": {"signal": "usr1"}}).checkpoint.signal == "SIGUSR1"


def test_unreadable_huge_and_non_yaml_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(missing)
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: x\n" + "#" * 300_000)
    with pytest.raises(SpecError, match="at most"):
        load_spec(huge)
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(garbage)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(scalar)


def test_nodes_asks_for_a_cpu_only_gang() -> None:
    spec = parse_spec({**GOOD, "resources": {"cpus": 1, "memory_gib": 2, "nodes": 2}})
    assert Demand.from_spec(spec).nodes == 2
    assert "resources: nodes applies to CPU-only jobs" in rejected(
        {**GOOD, "resources": {"gpus": 1, "nodes": 2}})
    assert "fixed cpus count" in rejected(
        {**GOOD, "resources": {"cpus": {"min": 1, "max": 2}, "nodes": 2}})
    assert "resources.nodes" in rejected({**GOOD, "resources": {"nodes": 0}})
    assert "resources.nodes" in rejected({**GOOD, "resources": {"nodes": "2"}})
