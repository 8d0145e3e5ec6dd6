"""How closely a camera policy follows its distillation teacher, step by step.

A distilled student is scored by where it ends, but it is trained on how often it picks the
teacher's action. Evaluation therefore labels every state the policy visits with the action
the camera-aware planner it was distilled from (`policies.oracle.Oracle(camera_aware=True)`)
would take there, and keeps per episode (no per-step arrays, so `episodes_*.jsonl` stays
small):

=======================  ==============================================================
key                      meaning
=======================  ==============================================================
``teacher_agreement``    discrete: share of steps where the policy took the teacher's
                         action
``teacher_confusion``    discrete: counts ``[label][action]`` over the episode's steps
``teacher_action_mae``   continuous: mean absolute difference of (linear, angular)
``teacher_steps``        continuous: steps compared
``teacher_error``        the teacher failed to label a state (the message); the episode
                         still counts for every other metric, and carries no agreement
=======================  ==============================================================

At an episode's first contact, `AgreementCounter.lead_up` says how the policy's last
`LEAD_UP_STEPS` actions differed from the teacher's (`LEAD_UP_KINDS`), which
`eval.rollout.run_episode` records as ``first_contact_vs_teacher``: a student that drives on
where its teacher would turn in place touches obstacles its teacher never does.

`summarize` pools them over the episodes of a report: agreement over all steps and over the
steps of successful and of failed episodes apart (a student that fails where it stops
imitating shows a gap there), and the confusion table, whose rows say what the teacher asked
for and whose columns what the policy did (printed by `metrics.format_confusion`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.actions import DRIVES
from policies.oracle import SEARCHES, Oracle

LEAD_UP_STEPS = 4
"""Steps up to and including an episode's first contact whose actions `lead_up` compares."""
LEAD_UP_KINDS = ("drove_where_teacher_turns", "turned_where_teacher_drives", "other_action",
                 "as_teacher")
"""`lead_up`'s answers, first match wins: on some step of the lead-up the policy drove where the
teacher would turn in place; it turned in place where the teacher would drive; it took another
action than the teacher's (a drive for a drive); it took the teacher's action on every step."""


@dataclass(frozen=True)
class TeacherSpec:
    """Which camera-aware planner labels the visited states: the distillation teacher's
    settings (`distill.teacher_clearance_m`, `distill.teacher_search`,
    `distill.teacher_keep_goal_in_view`)."""

    clearance_m: float = 0.0
    """Margin the teacher's plan keeps from obstacles and walls (m)."""
    search: str = "left"
    """How the teacher searches for a goal out of view (`policies.oracle.SEARCHES`)."""
    source: str = ""
    """Where the settings came from (a run's config.yaml, or a preset), for the report."""
    keep_goal_in_view: bool = False
    """Whether the teacher steers with a visible goal kept in view where its plan allows."""

    def __post_init__(self):
        if self.search not in SEARCHES:
            raise ValueError(f"teacher search {self.search!r}; use one of {SEARCHES}")
        if not self.clearance_m >= 0:
            raise ValueError(f"teacher clearance {self.clearance_m} m; it must be >= 0")

    def build(self, continuous: bool) -> Oracle:
        return Oracle(continuous=continuous, camera_aware=True, clearance_m=self.clearance_m,
                      search=self.search, keep_goal_in_view=self.keep_goal_in_view)

    def as_dict(self) -> dict[str, Any]:
        return {"clearance_m": self.clearance_m, "search": self.search,
                "keep_goal_in_view": self.keep_goal_in_view, "source": self.source}


class AgreementCounter:
    """Labels each visited state with the teacher's action and compares the policy's.

    Call `reset(info)` at each episode's start, `observe(info, goal_visible, action)` with the
    state the policy acted on (its `info` and whether its image shows the goal) and the action
    it took, and `facts()` at the end.
    """

    def __init__(self, teacher: Oracle, n_actions: int | None):
        self.teacher = teacher
        self.n_actions = n_actions
        self.confusion = np.zeros((n_actions or 1, n_actions or 1), dtype=np.int64)
        self.abs_error = np.zeros(2)
        self.steps = 0
        self.error: str | None = None
        self.recent: deque[tuple[int, int]] = deque(maxlen=LEAD_UP_STEPS)
        """(teacher's label, policy's action) of the last steps, discrete only."""

    def reset(self, info: dict) -> None:
        self.confusion[:] = 0
        self.abs_error[:] = 0.0
        self.steps = 0
        self.error = None
        self.recent.clear()
        try:
            self.teacher.reset(info)
        except Exception as err:  # a diagnostic must not turn a scored episode into an error
            self.error = f"{type(err).__name__}: {err}"

    def observe(self, info: dict, goal_visible: bool, action: Any) -> None:
        if self.error is not None:
            return
        try:
            label = self.teacher.act(info, goal_visible)
        except Exception as err:
            self.error = f"{type(err).__name__}: {err}"
            return
        self.steps += 1
        if self.n_actions is None:
            self.abs_error += np.abs(np.asarray(action, dtype=float) - label)
        else:
            self.confusion[int(label), int(action)] += 1
            self.recent.append((int(label), int(action)))

    def lead_up(self) -> str | None:
        """How the policy's last `LEAD_UP_STEPS` actions (the one just taken included) differed
        from the teacher's labels (`LEAD_UP_KINDS`); None for a continuous policy, or when the
        teacher labelled no step."""
        if self.error is not None or not self.recent:
            return None
        pairs = self.recent
        if any(DRIVES[action] and not DRIVES[label] for label, action in pairs):
            return "drove_where_teacher_turns"
        if any(DRIVES[label] and not DRIVES[action] for label, action in pairs):
            return "turned_where_teacher_drives"
        if any(label != action for label, action in pairs):
            return "other_action"
        return "as_teacher"

    def facts(self) -> dict[str, Any]:
        if self.error is not None:
            return {"teacher_error": self.error}
        if self.steps == 0:
            return {}
        if self.n_actions is None:
            return {"teacher_action_mae": float(self.abs_error.mean() / self.steps),
                    "teacher_steps": self.steps}
        return {"teacher_agreement": float(np.trace(self.confusion) / self.steps),
                "teacher_confusion": self.confusion.tolist()}


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Agreement pooled over the steps of `records`, which the caller has freed of crashed
    episodes (records with ``error``; `metrics.summarize` does this).

    Discrete: ``agreement`` (all steps), ``agreement_success`` / ``agreement_failure`` (steps
    of successful / failed episodes; None where there are none), ``confusion`` (summed
    ``[label][action]`` counts) and ``steps``. Continuous: ``action_mae`` with
    ``action_mae_success`` / ``action_mae_failure`` (step-weighted) and ``steps``. None when no
    record carries the fields.
    """
    labelled = [r for r in records if "teacher_confusion" in r]
    if labelled:
        def pooled(rows: list[Mapping[str, Any]]) -> np.ndarray | None:
            return (np.sum([np.asarray(r["teacher_confusion"], dtype=np.int64) for r in rows],
                           axis=0) if rows else None)

        def rate(matrix: np.ndarray | None) -> float | None:
            total = 0 if matrix is None else int(matrix.sum())
            return float(np.trace(matrix) / total) if total else None

        every = pooled(labelled)
        steps = int(every.sum())
        return {
            "steps": steps,
            "agreement": rate(every),
            "agreement_success": rate(pooled([r for r in labelled if r["success"]])),
            "agreement_failure": rate(pooled([r for r in labelled if not r["success"]])),
            "confusion": every.tolist(),
        }
    measured = [r for r in records if "teacher_action_mae" in r]
    if not measured:
        return None

    def mean_mae(rows: list[Mapping[str, Any]]) -> float | None:
        steps = sum(int(r["teacher_steps"]) for r in rows)
        if not steps:
            return None
        return float(sum(float(r["teacher_action_mae"]) * int(r["teacher_steps"])
                         for r in rows) / steps)

    return {
        "steps": sum(int(r["teacher_steps"]) for r in measured),
        "action_mae": mean_mae(measured),
        "action_mae_success": mean_mae([r for r in measured if r["success"]]),
        "action_mae_failure": mean_mae([r for r in measured if not r["success"]]),
    }

