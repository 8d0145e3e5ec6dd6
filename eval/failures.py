"""Why an episode failed: trajectory facts gathered during a rollout, and one mode per failure.

A rollout feeds every step's pose, geodesic distance, contact flag and goal visibility to a
`TrajectoryFacts`, whose `facts()` adds a few numbers to the episode record (no per-step
arrays, so `episodes_*.jsonl` stays small):

============================  =====  ========================================================
key                           unit   meaning
============================  =====  ========================================================
``timed_out``                 bool   the episode ran out of steps (neither success nor a
                                     terminate-on-contact rule ended it)
``longest_contact_streak``    steps  longest run of consecutive steps in contact
``turn_in_place_steps``       steps  steps that turned (>= ``TURN_MIN_RAD``) while moving
                                     less than ``STILL_M``
``goal_first_seen_step``      step   first step whose observation showed the goal (0: the
                                     first observation); None if it never did
``goal_in_view_frames``       count  observations (reset included) that showed the goal
``min_distance``              m      smallest geodesic distance to the goal centre reached
``longest_no_progress_steps`` steps  longest run of steps without getting ``PROGRESS_M``
                                     closer than the best distance so far
============================  =====  ========================================================

Steps in contact are the record's ``collisions`` (the env counts one per step in contact) and
the distance driven its ``path_length``; they are not repeated here.

`failure_mode(record)` names why a failed episode failed, from those facts alone. Rules, the
first that matches wins (most physical cause first, so a robot pinned against a wall facing
away from the goal counts as pinned, not as a search failure):

1. ``error``: the episode crashed (the record carries ``error``).
2. ``ended_by_contact``: not a timeout and not a success, so a terminate-on-contact rule ended
   it.
3. ``stuck_in_contact``: in contact on at least ``STUCK_CONTACT_FRACTION`` of its steps, or
   for ``PINNED_STREAK_STEPS`` steps in a row.
4. ``never_saw_goal``: the goal never showed in the camera image.
5. ``approached_timed_out``: got within ``APPROACH_DISTANCE_M`` of the goal, then timed out.
6. ``turning_in_place``: never committed to a direction: turned in place, or drove only the
   recovery drives that the decision rule forces after a revolution of turns
   (``recovery_steps``, `policies.actions`), on at least ``TURNING_FRACTION`` of its steps;
   or drove less than ``HARDLY_MOVED_M_PER_STEP`` per step on average (alternating left and
   right turns cancel out below ``TURN_MIN_RAD`` per step, so a dithering robot shows up by
   the distance it failed to drive). A recovery drive ends a spin; it is not the policy
   choosing a way, so a robot that spins, is driven out, and spins again counts here.
7. ``other``: saw the goal, kept mostly clear of obstacles, drove its own way, and never got
   close.

Successes have no mode (None). A failed record written without the facts (before they
existed) is ``unclassified``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from envs.grid import wrap_angle

FAILURE_MODES: tuple[str, ...] = (
    "error",
    "ended_by_contact",
    "stuck_in_contact",
    "never_saw_goal",
    "approached_timed_out",
    "turning_in_place",
    "other",
)
"""Every mode `failure_mode` can return for a record with facts, in rule order."""

UNCLASSIFIED = "unclassified"
"""Mode of a failed record that lacks the trajectory facts (written by an older rollout)."""

STILL_M = 0.01
"""Translation (m) per step below which the robot counts as not driving: a fifth of a
top-speed step (0.5 m/s at 10 Hz is 0.05 m), while the slowest driving action (forward-left at
0.6 of top speed) still covers ~0.03 m even with weak motors and low friction."""

TURN_MIN_RAD = 0.05
"""Heading change (rad) per step above which a still robot counts as turning in place: a third
of a top-rate turn step (1.6 rad/s at 10 Hz is 0.16 rad), above the jitter of contacts."""

PROGRESS_M = 0.02
"""Improvement (m) of the best geodesic distance that counts as progress: smaller than any
driving step, larger than the grid geodesic's jitter when the robot rocks in place."""

STUCK_CONTACT_FRACTION = 0.5
"""Share of an episode's steps in contact from which it is stuck: most of its time spent
against something, so the contact, not the search, ate the step budget."""

PINNED_STREAK_STEPS = 50
"""Steps of unbroken contact that mean pinned: 5 s at 10 Hz, in which a robot sliding along a
wall at top speed would cover 2.5 m, most of a 4 m arena's side; one that grazes and recovers
breaks contact within a few steps."""

APPROACH_DISTANCE_M = 1.0
"""Geodesic distance (m) to the goal centre that counts as having approached: 0.65 m from the
0.35 m success disk, where the beacon fills much of the image; timing out after that is a
failure to close the last metre, not to find the goal. Starts are at least 1.5 m away."""

TURNING_FRACTION = 0.5
"""Share of steps turning in place from which an episode is a turning-in-place failure: the
robot spent most of its budget rotating without committing to a direction."""

HARDLY_MOVED_M_PER_STEP = 0.005
"""Mean distance driven per step (m) below which the robot hardly moved: a tenth of a
top-speed step (0.05 m at 0.5 m/s and 10 Hz), 1 m in a 200-step episode, against the ~2-4 m
a start-to-goal path needs."""

_FACT_KEYS = ("timed_out", "longest_contact_streak", "turn_in_place_steps",
              "goal_first_seen_step", "goal_in_view_frames", "min_distance",
              "longest_no_progress_steps")


def _angle_diff(a: float, b: float) -> float:
    """|a - b| wrapped to [0, pi] (rad)."""
    return abs(wrap_angle(a - b))


class TrajectoryFacts:
    """Accumulates one episode's facts step by step; `facts()` gives the record entries.

    `pose` is the env's ``info["pose"]`` (x m, y m, yaw rad), `distance` its
    ``geodesic_distance`` (m), `in_view` whether the observation shows the goal.
    """

    def __init__(self, pose: Any, distance: float, in_view: bool):
        self._pose = np.asarray(pose, dtype=np.float64)
        self.steps = 0
        self.best = self.closest = float(distance)
        self.contact_run = self.longest_contact = 0
        self.stall_run = self.longest_stall = 0
        self.turn_in_place = 0
        self.first_seen: int | None = 0 if in_view else None
        self.seen_frames = int(in_view)

    def update(self, pose: Any, distance: float, collided: bool, in_view: bool) -> None:
        """Add one control step: the pose and distance after it, its contact flag, and whether
        the observation it produced shows the goal."""
        pose = np.asarray(pose, dtype=np.float64)
        self.steps += 1
        moved = float(np.hypot(*(pose[:2] - self._pose[:2])))
        if moved < STILL_M and _angle_diff(pose[2], self._pose[2]) >= TURN_MIN_RAD:
            self.turn_in_place += 1
        self._pose = pose
        self.closest = min(self.closest, float(distance))
        self.contact_run = self.contact_run + 1 if collided else 0
        self.longest_contact = max(self.longest_contact, self.contact_run)
        if distance <= self.best - PROGRESS_M:
            self.best, self.stall_run = float(distance), 0
        else:
            self.stall_run += 1
            self.longest_stall = max(self.longest_stall, self.stall_run)
        if in_view:
            self.seen_frames += 1
            if self.first_seen is None:
                self.first_seen = self.steps

    def facts(self, timed_out: bool) -> dict[str, Any]:
        """The record entries (see the module table)."""
        return {
            "timed_out": bool(timed_out),
            "longest_contact_streak": self.longest_contact,
            "turn_in_place_steps": self.turn_in_place,
            "goal_first_seen_step": self.first_seen,
            "goal_in_view_frames": self.seen_frames,
            "min_distance": self.closest,
            "longest_no_progress_steps": self.longest_stall,
        }


def failure_mode(record: Mapping[str, Any]) -> str | None:
    """The failure mode of one episode record (rules in the module docstring); None on success.

    Pure: reads ``error``, ``success``, ``steps``, ``collisions``, ``path_length``,
    ``recovery_steps`` (0 when absent: a record of an agent without recovery drives, or
    written before they were counted) and the trajectory facts.
    """
    if "error" in record:
        return "error"
    if record["success"]:
        return None
    if any(key not in record for key in _FACT_KEYS):
        return UNCLASSIFIED
    steps = max(int(record["steps"]), 1)
    if not record["timed_out"]:
        return "ended_by_contact"
    if (record["collisions"] >= STUCK_CONTACT_FRACTION * steps
            or record["longest_contact_streak"] >= PINNED_STREAK_STEPS):
        return "stuck_in_contact"
    if record["goal_first_seen_step"] is None:
        return "never_saw_goal"
    if record["min_distance"] <= APPROACH_DISTANCE_M:
        return "approached_timed_out"
    spinning = record["turn_in_place_steps"] + int(record.get("recovery_steps", 0))
    if (spinning >= TURNING_FRACTION * steps
            or record["path_length"] < HARDLY_MOVED_M_PER_STEP * steps):
        return "turning_in_place"
    return "other"


def count_modes(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``{mode: count}`` over episode `records`, every mode of
    `FAILURE_MODES` present (0 when absent, so tables line up) and ``unclassified`` only
    when some record is; successes are not counted."""
    counts = dict.fromkeys(FAILURE_MODES, 0)
    for rec in records:
        mode = failure_mode(rec)
        if mode is not None:
            counts[mode] = counts.get(mode, 0) + 1
    return counts
