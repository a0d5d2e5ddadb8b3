"""Issue 10, item 5: libraries over hand-written code. ROC AUC is scikit-learn's, one
parser reads every cpulist, and every pinned runtime dependency is one the code uses."""

from __future__ import annotations

import argparse
import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import numpy as np
import pytest

from slicebox.bench import clicklog
from slicebox.bench.run import parse_cores
from slicebox.bench.slices import SliceShape
from slicebox.pool.cpulist import parse_cpulist

ROOT = Path(__file__).resolve().parents[2]

# Pinned runtime dependencies that no module imports by name, each with the reason.
LOADED_BY_NAME_ELSEWHERE = {
    "psycopg": "SQLAlchemy loads it for postgresql+psycopg:// store URLs",
}


# ---- ROC AUC ----------------------------------------------------------------------------


def test_recsys_auc_is_scikit_learns(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.metrics import roc_auc_score

    calls = []

    def spy(labels, scores):  # noqa: ANN001, ANN202 - sklearn's own signature
        calls.append(len(scores))
        return roc_auc_score(labels, scores)

    monkeypatch.setattr(clicklog, "roc_auc_score", spy)  # raises if clicklog has its own
    log = clicklog.generate(4000, seed=3)
    scores = log.click_probability.astype(np.float64)
    assert clicklog.roc_auc(log.labels, scores) == pytest.approx(
        roc_auc_score(log.labels, scores))
    assert calls == [4000]


def test_auc_of_a_one_class_eval_set_names_the_problem() -> None:
    with pytest.raises(ValueError, match="both clicks and non-clicks"):
        clicklog.roc_auc(np.ones(10, dtype=np.float32), np.linspace(0, 1, 10))


# ---- one cpulist parser -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["0", "0-3", "0-1,4", " 2 , 5-6 "])
def test_every_cpulist_reader_agrees_with_the_pool_parser(text: str) -> None:
    expected = parse_cpulist(text)
    assert tuple(sorted(parse_cores(text))) == expected  # `python -m slicebox.bench.run`
    assert SliceShape.parse(f"cores:{text}").cores == expected  # `slicebox bench --slices`


@pytest.mark.parametrize("text", ["3-1", "0,0", "a-b", "-1"])
def test_every_cpulist_reader_refuses_what_the_pool_parser_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpulist(text)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_cores(text)
    with pytest.raises(ValueError):
        SliceShape.parse(f"cores:{text}")


def test_a_huge_cpulist_is_sized_without_being_expanded() -> None:
    from slicebox.pool.cpulist import cpulist_size

    assert cpulist_size(",".join(["0-65536"] * 100_000)) == 65_537 * 100_000


# ---- pinned dependencies are used -------------------------------------------------------


def _imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "slicebox").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_pinned_runtime_dependency_is_imported_somewhere() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {_canonical(re.split(r"[\[=<>~!; ]", dep, maxsplit=1)[0])
              for dep in project["dependencies"]}
    owners = packages_distributions()
    used = {_canonical(dist) for module in _imported_top_level_modules()
            for dist in owners.get(module, [])}
    unused = pinned - used - set(LOADED_BY_NAME_ELSEWHERE)
    assert not unused, f"pinned but never imported (drop the pin, or say why): {sorted(unused)}"
