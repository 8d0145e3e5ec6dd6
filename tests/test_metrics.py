"""Hand-checked navigation metrics: SPL, SoftSPL, bootstrap intervals, summary and table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from eval import metrics


def record(
    success: bool,
    path_length: float,
    shortest_path_length: float,
    final_distance: float,
    start_distance: float | None = None,
    collisions: int = 0,
    steps: int = 100,
    ret: float = 0.0,
) -> dict:
    """An episode record; the start distance defaults to the geodesic length, as in the env."""
    return {
        "success": success,
        "path_length": path_length,
        "shortest_path_length": shortest_path_length,
        "start_distance": shortest_path_length if start_distance is None else start_distance,
        "final_distance": final_distance,
        "collisions": collisions,
        "steps": steps,
        "return": ret,
    }


# Ordinary success: drove 5 m where 4 m would do, stopped 0.2 m short of the goal centre.
# SPL = 4 / max(5, 4) = 0.8; SoftSPL = (1 - 0.2 / 4) * 0.8 = 0.95 * 0.8 = 0.76.
ORDINARY = record(True, path_length=5.0, shortest_path_length=4.0, final_distance=0.2)
# Failure that got 3 of 4 m closer over a 6 m path.
# SPL = 0; SoftSPL = (1 - 1 / 4) * 4 / 6 = 0.75 * 2 / 3 = 0.5.
FAILED = record(False, path_length=6.0, shortest_path_length=4.0, final_distance=1.0)


def test_spl_ordinary_episode() -> None:
    assert metrics.episode_spl(ORDINARY) == pytest.approx(0.8)
    assert metrics.episode_soft_spl(ORDINARY) == pytest.approx(0.76)


def test_failed_episode_scores_zero_spl_but_keeps_soft_progress() -> None:
    assert metrics.episode_spl(FAILED) == 0.0
    assert metrics.episode_soft_spl(FAILED) == pytest.approx(0.5)


def test_path_shorter_than_geodesic_is_capped_at_one() -> None:
    # The grid geodesic overestimates: 3.8 m driven against 4.0 m "shortest" -> max(p, l) = l.
    rec = record(True, path_length=3.8, shortest_path_length=4.0, final_distance=0.0)
    assert metrics.episode_spl(rec) == 1.0
    assert metrics.episode_soft_spl(rec) == 1.0


def test_zero_length_episode() -> None:
    at_goal = record(True, path_length=0.0, shortest_path_length=0.0, final_distance=0.0)
    assert metrics.episode_spl(at_goal) == 1.0
    assert metrics.episode_soft_spl(at_goal) == 1.0
    stuck = record(False, path_length=0.0, shortest_path_length=0.0, final_distance=0.0)
    assert metrics.episode_spl(stuck) == 0.0
    assert metrics.episode_soft_spl(stuck) == 0.0


def test_soft_spl_is_zero_when_ending_farther_than_start() -> None:
    rec = record(False, path_length=2.0, shortest_path_length=4.0, final_distance=5.0)
    assert metrics.episode_soft_spl(rec) == 0.0


def test_negative_path_length_is_rejected() -> None:
    rec = record(True, path_length=-1.0, shortest_path_length=4.0, final_distance=0.0)
    with pytest.raises(ValueError, match="path lengths"):
        metrics.episode_spl(rec)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = np.random.default_rng(1).normal(size=30)
    assert metrics.bootstrap_ci(values, seed=7) == metrics.bootstrap_ci(values, seed=7)
    assert metrics.bootstrap_ci(values, seed=7) != metrics.bootstrap_ci(values, seed=8)


def test_bootstrap_contains_the_mean_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(2)
    small, large = rng.normal(1.0, 1.0, size=25), rng.normal(1.0, 1.0, size=400)
    lo_s, hi_s = metrics.bootstrap_ci(small)
    lo_l, hi_l = metrics.bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    # The width shrinks like 1/sqrt(n): 16x the data, about a quarter of the width.
    assert hi_l - lo_l < 0.5 * (hi_s - lo_s)


def test_bootstrap_degenerate_inputs() -> None:
    lo, hi = metrics.bootstrap_ci([])
    assert math.isnan(lo) and math.isnan(hi)
    assert metrics.bootstrap_ci([0.3]) == (0.3, 0.3)
    assert metrics.bootstrap_ci([2.0] * 5) == (2.0, 2.0)
    with pytest.raises(ValueError, match="confidence"):
        metrics.bootstrap_ci([1.0, 2.0], confidence=1.5)


def test_summary_excludes_and_counts_errors() -> None:
    at_goal = record(True, 0.0, 0.0, 0.0, collisions=2, steps=10, ret=1.0)
    records = [
        {**ORDINARY, "collisions": 1, "steps": 50, "return": 2.0},
        {**FAILED, "collisions": 3, "steps": 200, "return": -1.0},
        at_goal,
        {"error": "pybullet lost its connection"},
    ]
    s = metrics.summarize(records)
    assert s["episodes"] == 3
    assert s["errors"] == 1
    assert s["success_rate"] == pytest.approx(2 / 3)
    assert s["spl"] == pytest.approx((0.8 + 0.0 + 1.0) / 3)
    assert s["soft_spl"] == pytest.approx((0.76 + 0.5 + 1.0) / 3)
    assert s["collisions_per_episode"] == pytest.approx(2.0)
    assert s["mean_steps"] == pytest.approx(260 / 3)
    assert s["mean_return"] == pytest.approx(2 / 3)
    assert s["mean_final_distance"] == pytest.approx(1.2 / 3)
    for name in metrics.METRICS:
        lo, hi = s[f"{name}_ci95"]
        assert lo <= s[name] <= hi
    json.dumps(s, allow_nan=False)
    assert metrics.summarize(records) == s


def test_summary_of_only_errors_is_strict_json() -> None:
    s = metrics.summarize([{"error": "boom"}])
    assert s["episodes"] == 0 and s["errors"] == 1
    assert s["spl"] is None and s["spl_ci95"] == [None, None]
    json.dumps(s, allow_nan=False)


def test_format_table_aligns_rows() -> None:
    rows = {
        "policy": metrics.summarize([ORDINARY, FAILED]),
        "oracle": metrics.summarize([ORDINARY] * 4),
        "random": metrics.summarize([]),
    }
    table = metrics.format_table(rows)
    lines = table.splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0].split()[:3] == ["name", "episodes", "success_rate"]
    assert len({len(line) for line in lines}) == 1
    # Four identical ORDINARY episodes: every resample has SPL 0.8.
    assert "0.80 [0.80, 0.80]" in lines[3]
    assert lines[4].startswith("random") and "n/a" in lines[4]


def test_collision_free_success_and_contact_rate() -> None:
    # success clean, success with 3 contact steps, failure clean, failure with 1 contact step
    records = [
        record(True, 4.0, 4.0, 0.2, collisions=0),
        record(True, 4.0, 4.0, 0.2, collisions=3),
        record(False, 1.0, 4.0, 3.0, collisions=0),
        record(False, 1.0, 4.0, 3.0, collisions=1),
        {"error": "boom"},
    ]
    s = metrics.summarize(records)
    assert s["success_rate"] == pytest.approx(0.5)
    assert s["collision_free_success"] == pytest.approx(0.25)
    assert s["contact_episode_rate"] == pytest.approx(0.5)
    for name in ("collision_free_success", "contact_episode_rate"):
        lo, hi = s[f"{name}_ci95"]
        assert 0.0 <= lo <= s[name] <= hi <= 1.0 and lo < hi
    # every episode clean and successful: no resample can differ
    clean = metrics.summarize([record(True, 4.0, 4.0, 0.2)] * 5)
    assert clean["collision_free_success_ci95"] == [1.0, 1.0]
    assert clean["contact_episode_rate"] == 0.0 and clean["contact_episode_rate_ci95"] == [0.0, 0.0]


def test_summary_counts_failure_modes() -> None:
    facts = {"timed_out": True, "longest_contact_streak": 0, "turn_in_place_steps": 0,
             "goal_first_seen_step": 3, "goal_in_view_frames": 50, "min_distance": 0.5,
             "longest_no_progress_steps": 150}
    approached = {**record(False, 3.0, 4.0, 0.9, steps=200), **facts}
    blind = {**approached, "goal_first_seen_step": None}
    s = metrics.summarize([approached, approached, blind, ORDINARY, {"error": "boom"}])
    modes = s["failure_modes"]
    assert modes["approached_timed_out"] == 2 and modes["never_saw_goal"] == 1
    assert modes["error"] == 1 and sum(modes.values()) == 4
    # failed records written before the facts existed still count, as unclassified
    assert metrics.summarize([FAILED])["failure_modes"]["unclassified"] == 1
    json.dumps(s, allow_nan=False)
