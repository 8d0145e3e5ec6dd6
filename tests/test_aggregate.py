"""Statistics across seeds, checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from eval import aggregate


def test_iqm_of_a_known_array():
    # eight scores: the middle half is 3, 4, 5, 6
    assert aggregate.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    # an outlier at either end does not move it, unlike the mean
    assert aggregate.iqm([0, 1, 1, 1, 1, 1, 1, 100]) == pytest.approx(1.0)
    assert np.mean([0, 1, 1, 1, 1, 1, 1, 100]) > 13


def test_probability_of_improvement_of_a_known_pair():
    x, y = [3, 4], [1, 3, 5]
    # 3 vs (1, 3, 5): 1 + 0.5 + 0; 4 vs (1, 3, 5): 1 + 1 + 0 -> 3.5 of 6 pairs
    assert aggregate.probability_of_improvement(x, y) == pytest.approx(3.5 / 6)
    assert aggregate.probability_of_improvement(y, x) == pytest.approx(2.5 / 6)
    assert aggregate.probability_of_improvement([1, 1], [1, 1]) == 0.5
    assert aggregate.probability_of_improvement([2, 3], [0, 1]) == 1.0


def test_bootstrap_interval_contains_the_mean_and_is_reproducible():
    scores = [0.62, 0.70, 0.81, 0.55, 0.90, 0.74]
    lo, hi = aggregate.stratified_bootstrap_ci(scores)
    assert min(scores) <= lo < np.mean(scores) < hi <= max(scores)
    assert aggregate.stratified_bootstrap_ci(scores) == (lo, hi)  # fixed seed
    wide = aggregate.stratified_bootstrap_ci(scores[:3])
    assert wide[1] - wide[0] > 0


def test_bootstrap_is_stratified_by_task():
    # task 0 always scores 0, task 1 always 1: resampling runs within each task keeps one
    # of each in every resample, so the pooled mean cannot move. A bootstrap over the pooled
    # scores would often draw more of one task than the other.
    scores = np.array([[0.0, 1.0]] * 5)
    assert aggregate.stratified_bootstrap_ci(scores) == pytest.approx((0.5, 0.5))


def test_poi_interval_contains_the_estimate_and_undefined_with_one_seed():
    x, y = [0.8, 0.9, 0.7, 0.85], [0.6, 0.75, 0.7, 0.5]
    p = aggregate.probability_of_improvement(x, y)
    lo, hi = aggregate.probability_of_improvement_ci(x, y)
    assert 0 <= lo <= p <= hi <= 1
    assert aggregate.probability_of_improvement_ci([0.5], y) is None
    assert aggregate.stratified_bootstrap_ci([0.5]) is None


def test_summarize_scores_and_markdown():
    agg = aggregate.summarize_scores([0.2, 0.4, 0.9, 0.5])
    assert agg["n"] == 4 and agg["worst"] == 0.2 and agg["best"] == 0.9
    assert agg["mean"] == pytest.approx(0.5) and agg["iqm"] == pytest.approx(0.45)
    assert agg["mean_ci95"][0] <= 0.5 <= agg["mean_ci95"][1]
    rows = [{"config_id": "c0", "params": {"lr": 0.001}, "success_rate": agg, "spl": agg},
            {"config_id": "c1", "params": {"lr": 0.002}, "success_rate": None, "spl": None}]
    pairs = aggregate.compare({"c0": [0.2, 0.4], "c1": [0.6, 0.7]})
    assert len(pairs) == 2 and pairs[0]["p"] + pairs[1]["p"] == pytest.approx(1.0)
    text = aggregate.format_markdown(rows, pairs)
    assert "| `c0` | 4 | 0.50 [" in text and "0.45 [" in text
    assert "| `c1` | 0 | n/a" in text and "`lr=0.001`" in text
    assert "P(row > column)" in text


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="finite"):
        aggregate.summarize_scores([0.5, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        aggregate.summarize_scores([])
