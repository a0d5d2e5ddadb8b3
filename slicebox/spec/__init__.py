"""Job specs: the user's YAML, validated, and the demand the scheduler works with."""

from slicebox.spec.demand import DatasetRef, Demand
from slicebox.spec.job import JobSpec, SpecError, load_spec, parse_spec

__all__ = ["DatasetRef", "Demand", "JobSpec", "SpecError", "load_spec", "parse_spec"]
