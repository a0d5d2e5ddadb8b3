"""``slicebox schema``: the job spec's JSON Schema, from the pydantic model itself, so an
editor (VS Code's YAML extension, any JSON Schema validator) checks a job file as it is
typed, with the same fields, types and bounds ``slicebox submit`` enforces."""

from __future__ import annotations

import json

import typer

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # what pydantic emits


def job_spec_schema() -> dict:
    from slicebox.spec import JobSpec

    schema = JobSpec.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, **schema}


def schema() -> None:
    """Print the job spec's JSON Schema (e.g. `slicebox schema > job.schema.json`)."""
    typer.echo(json.dumps(job_spec_schema(), indent=2))
