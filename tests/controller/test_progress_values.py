"""Progress values are bounded and typed before they reach the store, whatever arrives."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from slicebox.controller.progress import MAX_SAMPLES, clean

NOW = 1_800_000_000.0
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8)


def test_the_issue_repros_are_dropped_with_a_reason():
    huge = clean(None, 10**26, None, NOW)
    assert huge.samples is None and huge.empty and "samples" in huge.problems[0]
    junk = clean("x", [1], None, NOW)
    assert junk.samples is None and junk.time == NOW and len(junk.problems) == 2
    assert clean(None, True, None, NOW).samples is None  # a bool is not a count
    good = clean(NOW - 5, 1234, 0.75, NOW)
    assert (good.time, good.samples, good.quality, good.problems) == (NOW - 5, 1234, 0.75, ())


@given(anything, anything, anything)
def test_whatever_a_job_prints_comes_out_bounded(time, samples, quality):
    out = clean(time, samples, quality, NOW)
    assert isinstance(out.time, float) and math.isfinite(out.time)
    assert out.samples is None or (type(out.samples) is int and 0 <= out.samples <= MAX_SAMPLES)
    assert out.quality is None or (type(out.quality) is float and math.isfinite(out.quality))
