"""Navigation metrics over episode records: success, SPL, SoftSPL and bootstrap intervals.

An episode record is a plain dict written by the rollout code:

==========================  =====  ==================================================
key                         unit   meaning
==========================  =====  ==================================================
``success``                 bool   the episode ended inside the goal radius
``path_length``             m      distance actually driven
``shortest_path_length``    m      geodesic start -> goal around obstacles
``start_distance``          m      geodesic distance to goal at the start
``final_distance``          m      geodesic distance to goal at the end
``collisions``              count  control steps in contact with an obstacle or wall
``steps``                   count  control steps taken
``return``                  --     sum of rewards
``spl``, ``soft_spl``       --     the episode's own ``episode_spl`` / ``episode_soft_spl``
==========================  =====  ==================================================

Rollouts also add the trajectory facts and ``failure_mode`` of ``eval.failures`` (and, when
a teacher labels the visited states, the fields of ``eval.agreement``); metrics
recompute SPL from the fields above rather than trusting a stored value, so a record edited
by hand cannot disagree with its summary.

A record that carries an ``error`` key (a message) stands for an episode that crashed; it is
left out of every metric and counted under ``errors`` instead.

SPL and SoftSPL follow Anderson et al. 2018 ("On Evaluation of Embodied Navigation Agents")
and Habitat-Lab's ``nav.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eval import agreement
from eval.failures import count_modes

Record = Mapping[str, Any]

METRICS: tuple[str, ...] = (
    "success_rate",
    "spl",
    "soft_spl",
    "collisions_per_episode",
    "mean_steps",
    "mean_return",
    "mean_final_distance",
    "collision_free_success",
    "contact_episode_rate",
)
"""Metric names in ``summarize``'s output; each also has a ``<name>_ci95`` entry."""

TABLE_COLUMNS: tuple[str, ...] = (
    "success_rate",
    "spl",
    "soft_spl",
    "collision_free_success",
    "contact_episode_rate",
    "collisions_per_episode",
    "mean_steps",
    "mean_return",
)
"""Metrics shown by ``format_table``, left to right."""


def _efficiency(path_length: float, shortest_path_length: float) -> float:
    """Path efficiency ``l / max(p, l)`` in [0, 1].

    A path shorter than the geodesic (the grid planner overestimates ``l`` slightly) counts
    as perfectly efficient rather than above 1. ``l == 0`` means the start was already at the
    goal, so nothing could have been done better: 1.0.
    """
    if path_length < 0 or shortest_path_length < 0:
        raise ValueError(
            f"path lengths must be >= 0, got path_length={path_length}, "
            f"shortest_path_length={shortest_path_length}; check the rollout's odometry"
        )
    if shortest_path_length == 0:
        return 1.0
    return shortest_path_length / max(path_length, shortest_path_length)


def episode_spl(rec: Record) -> float:
    """Success weighted by Path Length of one episode: ``S * l / max(p, l)``, in [0, 1].

    ``S`` is ``rec["success"]``, ``p`` the driven ``path_length`` (m) and ``l`` the geodesic
    ``shortest_path_length`` (m). Edge cases:

    - failure gives 0.0 whatever the path;
    - success with ``p < l`` gives 1.0, since ``max(p, l) = l``;
    - success with ``l == 0`` (spawned at the goal) gives 1.0.
    """
    if not rec["success"]:
        return 0.0
    return _efficiency(float(rec["path_length"]), float(rec["shortest_path_length"]))


def episode_soft_spl(rec: Record) -> float:
    """Habitat's SoftSPL of one episode: ``max(0, 1 - d_final / d_start) * l / max(p, l)``.

    ``d_start`` and ``d_final`` are the geodesic ``start_distance`` and ``final_distance`` (m);
    ``p`` and ``l`` as in ``episode_spl``. Unlike SPL it credits the progress of a failed
    episode. Habitat scales by ``d_start`` in the efficiency term; ``l`` is used here so that
    both metrics share one efficiency definition (they are equal unless the env says
    otherwise). ``d_start == 0`` leaves progress undefined: 1.0 on success, else 0.0. The result
    is in [0, 1]; ending farther away than the start gives 0.
    """
    d_start = float(rec["start_distance"])
    if d_start <= 0:
        return 1.0 if rec["success"] else 0.0
    progress = max(0.0, 1.0 - float(rec["final_distance"]) / d_start)
    return progress * _efficiency(float(rec["path_length"]), float(rec["shortest_path_length"]))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    Draws ``n_resamples`` resamples of size ``n`` with replacement in one ``(n_resamples, n)``
    index array (memory ~ ``8 * n_resamples * n`` bytes), so the same seed always gives the same
    interval. Returns ``(lo, hi)`` as plain floats; ``(nan, nan)`` for no values and ``(v, v)``
    for a single value ``v``, where resampling carries no information.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return (float(lo), float(hi))


def per_episode_values(records: Sequence[Record]) -> dict[str, list[float]]:
    """One list per metric in ``METRICS``, each with one float per record, in record order.

    Records must be free of ``error`` entries; ``summarize`` filters them first.
    """
    return {
        "success_rate": [1.0 if r["success"] else 0.0 for r in records],
        "spl": [episode_spl(r) for r in records],
        "soft_spl": [episode_soft_spl(r) for r in records],
        "collisions_per_episode": [float(r["collisions"]) for r in records],
        "mean_steps": [float(r["steps"]) for r in records],
        "mean_return": [float(r["return"]) for r in records],
        "mean_final_distance": [float(r["final_distance"]) for r in records],
        # success without a single step in contact: what "drives clean" means
        "collision_free_success": [1.0 if r["success"] and r["collisions"] == 0 else 0.0
                                   for r in records],
        "contact_episode_rate": [1.0 if r["collisions"] > 0 else 0.0 for r in records],
    }


def _json_float(x: float) -> float | None:
    """``x`` as a plain float, or None for NaN: strict JSON has no NaN."""
    return None if math.isnan(x) else float(x)


CONTACT_SIDES_DEG = {"ahead": 45.0, "beside": 90.0, "behind": 180.0}
"""Where an episode's first contact was, by its bearing off the robot's heading (at most this
many degrees either way, first match): ahead, where the camera looks; beside; behind."""


def contact_sides(records: Sequence[Record]) -> dict[str, int]:
    """``{side: episodes}``: the episodes whose first contact was on each side of the robot
    (`CONTACT_SIDES_DEG`, from ``first_contact_bearing_deg``); episodes without contact, or
    from before the bearing was recorded, count nowhere."""
    counts = dict.fromkeys(CONTACT_SIDES_DEG, 0)
    for record in records:
        bearing = record.get("first_contact_bearing_deg")
        if bearing is not None:
            side = next(name for name, limit in CONTACT_SIDES_DEG.items()
                        if abs(bearing) <= limit)
            counts[side] += 1
    return counts


def summarize(records: Sequence[Record], seed: int = 0) -> dict[str, Any]:
    """Aggregate episode records into one JSON-ready dict.

    Keys: ``episodes`` (valid records), ``errors`` (records with an ``error`` key, excluded from
    everything else), then for each name in ``METRICS`` its mean and ``<name>_ci95: [lo, hi]``
    (95 % percentile bootstrap, ``seed`` fixed so reruns match). All metrics share the seed, so
    their resamples pick the same episodes, which keeps the intervals comparable. With no valid
    episode every metric and bound is None rather than NaN, so ``json.dumps(...,
    allow_nan=False)`` works. ``failure_modes`` counts every failed record by
    ``failures.failure_mode`` (``{mode: count}``, crashed episodes under ``error``);
    ``first_contact_in_recovery`` counts the episodes whose first contact came on a recovery
    drive (`eval.rollout.run_episode`), and ``first_contact_sides`` where on the robot it was
    (`contact_sides`). Records
    labelled by a teacher add ``teacher`` (`agreement.summarize`) and
    ``first_contact_vs_teacher``, the episodes with contact counted by how the steps up to the
    first one differed from the teacher's (`agreement.LEAD_UP_KINDS`).
    """
    valid = [r for r in records if "error" not in r]
    out: dict[str, Any] = {"episodes": len(valid), "errors": len(records) - len(valid)}
    for name, vals in per_episode_values(valid).items():
        mean = float(np.mean(vals)) if vals else math.nan
        lo, hi = bootstrap_ci(vals, seed=seed, confidence=0.95)
        out[name] = _json_float(mean)
        out[f"{name}_ci95"] = [_json_float(lo), _json_float(hi)]
    out["failure_modes"] = count_modes(records)
    # tells the contact the decision rule's recovery drives start from the student's own
    out["first_contact_in_recovery"] = sum(bool(r.get("first_contact_in_recovery"))
                                           for r in valid)
    out["first_contact_sides"] = contact_sides(valid)
    teacher = agreement.summarize(valid)
    if teacher is not None:
        out["teacher"] = teacher
        if "confusion" in teacher:  # lead-ups compare discrete actions
            lead_ups = [r.get("first_contact_vs_teacher") for r in valid]
            out["first_contact_vs_teacher"] = {kind: lead_ups.count(kind)
                                               for kind in agreement.LEAD_UP_KINDS}
    return out


def _format_cell(summary: Mapping[str, Any], name: str) -> str:
    """``'0.93 [0.89, 0.96]'`` for one metric of a summary; ``'n/a'`` where it is undefined."""
    mean = summary.get(name)
    lo, hi = summary.get(f"{name}_ci95") or (None, None)
    if mean is None or math.isnan(mean):
        return "n/a"
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{mean:.2f}"
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def format_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Plain-text table, one row per policy name (e.g. ``policy``, ``oracle``, ``random``).

    ``rows`` maps a name to a ``summarize`` output. Columns: ``episodes`` and then
    ``TABLE_COLUMNS``, each cell ``mean [lo, hi]`` with two decimals. The name column is
    left-aligned and the others right-aligned, so the table reads in a terminal and in a
    Markdown code block. Returns the table without a trailing newline.
    """
    header = ["name", "episodes", *TABLE_COLUMNS]
    body = [
        [name, str(summary.get("episodes", "n/a"))]
        + [_format_cell(summary, c) for c in TABLE_COLUMNS]
        for name, summary in rows.items()
    ]
    lines, widths = _aligned([header, *body])
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([lines[0], rule, *lines[1:]])


def format_confusion(confusion: Sequence[Sequence[int]], names: Sequence[str]) -> str:
    """Plain-text confusion table of `agreement.summarize`: one row per teacher label, its
    share of each policy action (rows sum to 1), and how many steps carried that label."""
    matrix = np.asarray(confusion, dtype=np.int64)
    body = []
    for name, row in zip(names, matrix, strict=True):
        total = int(row.sum())
        shares = [f"{v / total:.2f}" if total else "-" for v in row]
        body.append([name, *shares, str(total)])
    lines, _ = _aligned([["teacher \\ policy", *names, "steps"], *body])
    return "\n".join(lines)


def _aligned(rows: Sequence[Sequence[str]]) -> tuple[list[str], list[int]]:
    """Rows of cells as text lines (first column left-aligned, the rest right-aligned, two
    spaces apart) and the column widths."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return [line(r) for r in rows], widths
