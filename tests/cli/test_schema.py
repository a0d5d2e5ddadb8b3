"""``slicebox schema``: the job spec's JSON Schema, as an editor would use it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted([*ROOT.glob("examples/jobs/*.yaml"), *ROOT.glob("examples/plan-jobs/*.yaml"),
                   *ROOT.glob("examples/elastic/*.yaml")])
runner = CliRunner()


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)  # a valid schema of the dialect it names
    return cls(schema)


def test_every_example_job_validates(validator: jsonschema.protocols.Validator) -> None:
    assert EXAMPLES
    for path in EXAMPLES:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], f"{path.name}: {errors}"


@pytest.mark.parametrize("bad, where", [
    ({"name": "ok", "command": ["x"], "resouces": {"cpus": 1}}, "resouces"),  # misspelt
    ({"name": "Bad Name!", "command": ["x"]}, "name"),
    ({"name": "ok", "command": ["x"], "resources": {"cpus": 0}}, "cpus"),
    ({"name": "ok", "command": ["x"], "resources": {"gpus": "two"}}, "gpus"),
    ({"name": "ok"}, "command"),
])
def test_the_schema_refuses_what_submit_refuses(validator: jsonschema.protocols.Validator,
                                                bad: dict, where: str) -> None:
    with pytest.raises(SpecError):
        parse_spec(bad)
    errors = list(validator.iter_errors(bad))
    assert errors, f"the schema let {bad} through"
    assert any(where in json.dumps([list(e.absolute_path), e.message]) for e in errors)
