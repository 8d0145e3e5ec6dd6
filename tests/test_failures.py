"""Failure modes from trajectory facts, the facts themselves, goal visibility, per-episode SPL.

The classifier is checked on hand-made records (one per mode, each threshold at and just past
its boundary, and the rule order); the facts on a hand-made step sequence; the geometric goal
visibility against the rendered segmentation mask; the rollout's records on real episodes of
a small env (40x40 camera).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from envs.config import EnvConfig, ObservationConfig
from envs.nav_env import SEG_GOAL, CameraNavEnv
from envs.visibility import beacon_sight_points
from eval import failures, metrics
from eval.failures import (
    APPROACH_DISTANCE_M,
    FAILURE_MODES,
    PINNED_STREAK_STEPS,
    TrajectoryFacts,
    count_modes,
    failure_mode,
)
from eval.rollout import OracleAgent, RandomAgent, episode_seed, make_eval_env, run_episode

SIZE = 40


def failed(**facts) -> dict:
    """A 200-step timeout that drove 3 m, saw the goal at step 10, never got close, never
    touched anything and hardly turned in place: `other` unless `facts` say otherwise."""
    rec = {
        "success": False, "steps": 200, "collisions": 0, "path_length": 3.0,
        "timed_out": True, "longest_contact_streak": 0, "turn_in_place_steps": 10,
        "goal_first_seen_step": 10, "goal_in_view_frames": 40, "min_distance": 2.0,
        "longest_no_progress_steps": 120,
    }
    rec.update(facts)
    return rec


# ------------------------------------------------------------------------------ classifier


def test_one_record_per_mode() -> None:
    assert failure_mode({"error": "pybullet lost its connection"}) == "error"
    assert failure_mode(failed(success=True)) is None
    assert failure_mode(failed(timed_out=False, steps=40, collisions=1,
                               longest_contact_streak=1)) == "ended_by_contact"
    assert failure_mode(failed(collisions=150, longest_contact_streak=119)) == "stuck_in_contact"
    assert failure_mode(failed(goal_first_seen_step=None, goal_in_view_frames=0)) == \
        "never_saw_goal"
    assert failure_mode(failed(min_distance=0.6)) == "approached_timed_out"
    assert failure_mode(failed(turn_in_place_steps=180, path_length=0.7)) == "turning_in_place"
    assert failure_mode(failed()) == "other"


def test_record_without_facts_is_unclassified() -> None:
    old = {"success": False, "steps": 200, "collisions": 0, "path_length": 1.0}
    assert failure_mode(old) == failures.UNCLASSIFIED
    assert failure_mode({**old, "success": True}) is None


def test_contact_thresholds_at_their_boundaries() -> None:
    half = int(failures.STUCK_CONTACT_FRACTION * 200)
    assert failure_mode(failed(collisions=half, longest_contact_streak=10)) == "stuck_in_contact"
    assert failure_mode(failed(collisions=half - 1, longest_contact_streak=10)) == "other"
    streak = PINNED_STREAK_STEPS
    assert failure_mode(failed(collisions=streak, longest_contact_streak=streak)) == \
        "stuck_in_contact"
    assert failure_mode(failed(collisions=streak, longest_contact_streak=streak - 1)) == "other"


def test_approach_and_turning_thresholds_at_their_boundaries() -> None:
    assert failure_mode(failed(min_distance=APPROACH_DISTANCE_M)) == "approached_timed_out"
    assert failure_mode(failed(min_distance=APPROACH_DISTANCE_M + 0.01)) == "other"
    half = int(failures.TURNING_FRACTION * 200)
    assert failure_mode(failed(turn_in_place_steps=half)) == "turning_in_place"
    assert failure_mode(failed(turn_in_place_steps=half - 1)) == "other"
    # dithering: left and right turns cancel, so few steps count as turns, and it hardly moves
    least = failures.HARDLY_MOVED_M_PER_STEP * 200
    assert failure_mode(failed(turn_in_place_steps=50, path_length=0.05)) == "turning_in_place"
    assert failure_mode(failed(path_length=least - 0.01)) == "turning_in_place"
    assert failure_mode(failed(path_length=least)) == "other"
    # spinning broken by the rule's recovery drives: those drives are not a way chosen
    assert failure_mode(failed(turn_in_place_steps=half - 30, recovery_steps=30)) == \
        "turning_in_place"
    assert failure_mode(failed(turn_in_place_steps=half - 30, recovery_steps=29)) == "other"


def test_rule_order() -> None:
    # pinned facing away from the goal: the contact is the cause, not the search
    assert failure_mode(failed(collisions=150, longest_contact_streak=150,
                               goal_first_seen_step=None)) == "stuck_in_contact"
    # bumped into the goal's neighbourhood without ever seeing it: a perception failure
    assert failure_mode(failed(goal_first_seen_step=None, min_distance=0.5)) == "never_saw_goal"
    # got close, then spun in place there: the last metre is what failed
    assert failure_mode(failed(min_distance=0.5, turn_in_place_steps=190)) == \
        "approached_timed_out"
    # the goal seen at the very first frame counts as seen (0 is not None)
    assert failure_mode(failed(goal_first_seen_step=0)) == "other"


def test_count_modes_lists_every_mode_and_skips_successes() -> None:
    records = [failed(), failed(success=True), {"error": "boom"},
               failed(min_distance=0.2), failed(min_distance=0.3)]
    counts = count_modes(records)
    assert list(counts) == list(FAILURE_MODES)
    assert counts["approached_timed_out"] == 2 and counts["other"] == 1
    assert counts["error"] == 1 and sum(counts.values()) == 4
    assert count_modes([{"success": False, "steps": 5, "collisions": 0}])[
        failures.UNCLASSIFIED] == 1


# ------------------------------------------------------------------------------ facts


def test_trajectory_facts_on_hand_made_steps() -> None:
    facts = TrajectoryFacts([0.0, 0.0, 0.0], distance=3.0, in_view=False)
    steps = [  # (pose after the step, geodesic distance, contact, goal in view)
        ([0.0, 0.0, 0.16], 3.0, False, False),    # turn in place
        ([0.0, 0.0, 0.32], 3.0, False, True),     # turn in place, goal shows
        ([0.05, 0.0, 0.32], 2.95, False, True),   # drive: progress
        ([0.05, 0.0, 0.32], 2.95, True, True),    # pinned: no motion, no progress
        ([0.051, 0.0, 0.33], 2.95, True, False),  # pinned, rocks by 1 mm and 0.01 rad
        ([0.051, 0.0, 0.33], 2.94, True, False),  # 1 cm closer: below PROGRESS_M
        ([0.10, 0.0, 3.14], 2.80, False, True),   # free again, progress
        ([0.10, 0.0, -3.14], 2.80, False, True),  # 0.003 rad across the +-pi seam: no turn
    ]
    for pose, dist, contact, seen in steps:
        facts.update(pose, dist, contact, seen)
    got = facts.facts(timed_out=True)
    assert got == {
        "timed_out": True,
        "longest_contact_streak": 3,
        "turn_in_place_steps": 2,
        "goal_first_seen_step": 2,
        "goal_in_view_frames": 5,
        "min_distance": 2.80,
        "longest_no_progress_steps": 3,
    }
    assert facts.facts(timed_out=False)["timed_out"] is False


def test_goal_seen_at_reset_is_step_zero() -> None:
    facts = TrajectoryFacts([0.0, 0.0, 0.0], distance=2.0, in_view=True)
    facts.update([0.0, 0.0, 0.0], 2.0, False, False)
    got = facts.facts(timed_out=True)
    assert got["goal_first_seen_step"] == 0 and got["goal_in_view_frames"] == 1
    assert got["turn_in_place_steps"] == 0 and got["longest_no_progress_steps"] == 1


# ------------------------------------------------------------------------------ visibility


def _sight(goal_xy, yaw: float = 0.0, eye=(0.0, 0.0, 0.25), pitch_deg: float = -10.0):
    pitch = math.radians(pitch_deg)
    target = (eye[0] + math.cos(yaw) * math.cos(pitch), eye[1] + math.sin(yaw) * math.cos(pitch),
              eye[2] + math.sin(pitch))
    return beacon_sight_points(eye, target, yaw, goal_xy, height_m=1.0, radius_m=0.25,
                               fov_deg=85.0, aspect=1.0)


def test_beacon_sight_points_follow_the_frustum() -> None:
    ahead = _sight((2.0, 0.0))
    assert len(ahead) == 15  # three lines, five heights, all inside the view
    for x, y, _ in ahead:  # on the beacon's surface, on the face towards the camera
        assert math.hypot(x - 2.0, y) == pytest.approx(0.25) and x < 2.0
    assert _sight((-2.0, 0.0)) == []  # behind
    assert _sight((0.0, 2.0)) == []  # 90 degrees to the left, outside the 42.5 degree half-view
    assert len(_sight((0.0, 2.0), yaw=math.pi / 2)) == 15  # turn to face it
    # close up the beacon overflows the image: only the part inside the view is sampled
    close = _sight((0.45, 0.0))
    assert close and max(z for _, _, z in close) < 0.5


def test_goal_in_view_matches_the_rendered_segmentation() -> None:
    """The geometric check against the renderer's own answer, frame by frame."""
    cfg = EnvConfig(split="heldout", max_steps=80,
                    observation=ObservationConfig(width=SIZE, height=SIZE, segmentation=True))
    env = CameraNavEnv(cfg)
    geometric, rendered = [], []
    try:
        for k in range(4):
            obs, info = env.reset(seed=episode_seed(3, k))
            agent = OracleAgent(False) if k % 2 else RandomAgent(env.action_space, k)
            agent.reset(info)
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
                done = terminated or truncated
                geometric.append(env.goal_in_view())
                rendered.append(bool((obs[..., -1] == SEG_GOAL).any()))
    finally:
        env.close()
    geometric_arr, rendered_arr = np.array(geometric), np.array(rendered)
    assert rendered_arr.any() and not rendered_arr.all()  # both cases occur
    assert (geometric_arr == rendered_arr).mean() >= 0.95


# ------------------------------------------------------------------------------ rollout records


@pytest.fixture(scope="module")
def rolled() -> list[dict]:
    """Two oracle episodes and two random ones on the held-out split (30 steps for random)."""
    obs_cfg = ObservationConfig(width=SIZE, height=SIZE)
    records = []
    for agent_name, max_steps in (("oracle", 200), ("random", 30)):
        env = make_eval_env(EnvConfig(split="heldout", max_steps=max_steps,
                                      observation=obs_cfg), False)
        try:
            agent = (OracleAgent(False) if agent_name == "oracle"
                     else RandomAgent(env.action_space, 0))
            records += [run_episode(env, agent, episode_seed(2, k), k).record for k in range(2)]
        finally:
            env.close()
    return records


def test_records_carry_their_own_spl(rolled: list[dict]) -> None:
    for rec in rolled:
        assert rec["spl"] == metrics.episode_spl(rec)
        assert rec["soft_spl"] == metrics.episode_soft_spl(rec)
    oracle, random = rolled[:2], rolled[2:]
    assert all(r["success"] and r["spl"] > 0.8 and r["soft_spl"] > 0.5 for r in oracle)
    assert all(not r["success"] and r["spl"] == 0.0 for r in random)
    # the summary's SPL is the mean of the records' own
    assert metrics.summarize(rolled)["spl"] == pytest.approx(np.mean([r["spl"] for r in rolled]))


def test_records_carry_facts_and_mode(rolled: list[dict]) -> None:
    for rec in rolled:
        json.dumps(rec, allow_nan=False)
        assert rec["failure_mode"] == failure_mode(rec)
        assert 0 <= rec["turn_in_place_steps"] <= rec["steps"]
        assert 0 <= rec["longest_contact_streak"] <= rec["collisions"] <= rec["steps"]
        assert rec["min_distance"] <= min(rec["start_distance"], rec["final_distance"]) + 1e-9
        assert rec["longest_no_progress_steps"] <= rec["steps"]
        assert rec["goal_in_view_frames"] <= rec["steps"] + 1
    oracle, random = rolled[:2], rolled[2:]
    for rec in oracle:
        assert rec["failure_mode"] is None and not rec["timed_out"]
        assert rec["goal_first_seen_step"] is not None and rec["goal_in_view_frames"] > 0
        assert rec["min_distance"] <= 0.4
    for rec in random:
        assert rec["timed_out"] and rec["steps"] == 30
        assert rec["failure_mode"] in FAILURE_MODES


class _ForwardInRecovery:
    """Drives straight ahead, and says its drives from step `from_step` on are recovery
    drives (as `PolicyAgent.recovering` does for the drive that ends a spinning loop)."""

    def __init__(self, from_step: int):
        self.from_step, self.t = from_step, 0

    def reset(self, info: dict) -> None:
        self.t = 0

    def act(self, obs, info: dict) -> int:
        self.t += 1
        return 0

    def recovering(self) -> bool:
        return self.t >= self.from_step


def test_records_count_the_contact_that_recovery_drives_take() -> None:
    env = make_eval_env(EnvConfig(split="heldout", max_steps=120,
                                  observation=ObservationConfig(width=SIZE, height=SIZE)), False)
    try:
        # find an episode whose straight drive ends against something
        seed = next(episode_seed(2, k) for k in range(20)
                    if run_episode(env, _ForwardInRecovery(10**6), episode_seed(2, k),
                                   k).record["collisions"] > 0)
        plain = run_episode(env, _ForwardInRecovery(10**6), seed, 0).record
        first = plain["steps"] - plain["collisions"]  # a pinned robot stays in contact
        assert plain["recovery_contact_steps"] == 0 and not plain["first_contact_in_recovery"]
        assert plain["recovery_steps"] == 0
        every = run_episode(env, _ForwardInRecovery(0), seed, 0).record
        assert every["recovery_contact_steps"] == every["collisions"] == plain["collisions"]
        assert every["first_contact_in_recovery"] and every["recovery_steps"] == every["steps"]
        # recovery only after the first contact: later contact counts, the first does not
        late = run_episode(env, _ForwardInRecovery(first + 2), seed, 0).record
        assert not late["first_contact_in_recovery"]
        assert 0 < late["recovery_contact_steps"] < late["collisions"]
        # the agent is asked before each action: steps first + 2 onwards are recovery drives
        assert late["recovery_steps"] == late["steps"] - (first + 2)
        oracle = run_episode(env, OracleAgent(False), seed, 0).record  # says nothing of recovery
        assert oracle["recovery_contact_steps"] == 0 and not oracle["first_contact_in_recovery"]
        assert oracle["recovery_steps"] == 0
    finally:
        env.close()
    summary = metrics.summarize([every, late, plain])
    assert summary["first_contact_in_recovery"] == 1
    # where the first contact was: recorded once, the same for the same drive
    assert plain["first_contact_bearing_deg"] == every["first_contact_bearing_deg"]
    assert -180.0 <= plain["first_contact_bearing_deg"] < 180.0
    assert sum(summary["first_contact_sides"].values()) == 3


def test_the_contact_bearing_is_where_the_robot_touches_the_wall() -> None:
    """A robot set against the arena's east wall touches it ahead, to its right, behind or
    to its left as it faces east, north, west or south."""
    env = make_eval_env(EnvConfig(observation=ObservationConfig(width=SIZE, height=SIZE)), True)
    base = env.unwrapped
    try:
        env.reset(seed=0)
        assert base.contact_bearing_deg() is None
        against_wall = base.cfg.arena_half_size_m - 0.98 * base.cfg.robot_radius_m
        for yaw, bearing in ((0.0, 0.0), (math.pi / 2, -90.0), (math.pi, -180.0),
                             (-math.pi / 2, 90.0)):
            base._set_pose(against_wall, 0.0, yaw)
            assert env.step(np.zeros(2, np.float32))[4]["collided"]
            assert base.contact_bearing_deg() == pytest.approx(bearing, abs=1e-6)
    finally:
        env.close()


def test_first_contacts_are_counted_by_the_side_they_were_on() -> None:
    bearings = [0.0, -45.0, 45.5, -90.0, 90.5, -179.0, None]
    records = [{"first_contact_bearing_deg": b} for b in bearings] + [{}]
    assert metrics.contact_sides(records) == {"ahead": 2, "beside": 2, "behind": 2}
    assert metrics.contact_sides([]) == {"ahead": 0, "beside": 0, "behind": 0}
