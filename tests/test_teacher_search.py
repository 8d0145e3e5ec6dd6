"""The camera-aware teacher's search while the goal is out of view: hand-made poses on an empty
grid, where the plan's direction, the robot's rotation and the goal's visibility are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.config import ConfigError
from eval.agreement import TeacherSpec
from policies.oracle import Oracle
from training.config import load_config

SOUTH = -math.pi / 2


def _info(heading: float) -> dict:
    """An empty 4 m arena, the robot at (-1.5, 0) facing `heading`, the goal at (1.5, 0): facing
    south, the plan turns left in place (the goal is 90 degrees to the left)."""
    return {"occupancy": np.ones((40, 40), bool), "grid_half_size_m": 2.0,
            "grid_resolution_m": 0.1, "goal": np.array([1.5, 0.0]),
            "pose": np.array([-1.5, 0.0, heading]), "scene": {"camera_fov_deg": 90.0}}


def _label(search: str, previous: float, now: float, visible: bool | None) -> int:
    teacher = Oracle(camera_aware=True, search=search)
    teacher.reset(_info(previous))
    return teacher.act(_info(now), visible)


def test_continue_keeps_the_rotation_the_frames_show() -> None:
    # rotating right (heading fell 0.1 rad) with no goal in the image: keep turning right,
    # although the plan's way round is left
    assert _label("continue", SOUTH + 0.1, SOUTH, visible=False) == 4
    # rotating left: left
    assert _label("continue", SOUTH - 0.1, SOUTH, visible=False) == 3


def test_continue_follows_the_plan_when_still_or_when_the_goal_shows() -> None:
    assert _label("continue", SOUTH, SOUTH, visible=False) == 3  # not rotating: the plan's way
    assert _label("continue", SOUTH + 0.02, SOUTH, visible=False) == 3  # jitter is not rotation
    # the image shows the goal: the plan steers (left), whichever way the robot rotated
    assert _label("continue", SOUTH + 0.1, SOUTH, visible=True) == 3


def test_continue_mirrors_for_a_goal_on_the_right() -> None:
    north = math.pi / 2  # the goal is 90 degrees to the right: the plan turns right
    assert _label("continue", north, north, visible=False) == 4
    assert _label("continue", north - 0.1, north, visible=False) == 3  # rotating left: left


def test_left_search_turns_left_out_of_view_whatever_the_rotation() -> None:
    north = math.pi / 2
    assert _label("left", north + 0.1, north, visible=None) == 3
    assert _label("left", SOUTH + 0.1, SOUTH, visible=None) == 3


def test_continuous_teacher_searches_with_full_angular_command() -> None:
    teacher = Oracle(continuous=True, camera_aware=True, search="continue")
    teacher.reset(_info(SOUTH + 0.1))
    np.testing.assert_allclose(teacher.act(_info(SOUTH), False), [0.0, -1.0])


def test_continue_search_needs_the_visibility() -> None:
    teacher = Oracle(camera_aware=True, search="continue")
    teacher.reset(_info(SOUTH))
    with pytest.raises(ValueError, match="goal_visible"):
        teacher.act(_info(SOUTH))


def test_unknown_search_is_a_config_error() -> None:
    assert load_config("default", ["distill.teacher_search=continue"]) \
        .distill.teacher_search == "continue"
    with pytest.raises(ConfigError, match=r"^distill\.teacher_search: 'spiral'; use one of "
                                          r"left, continue"):
        load_config("default", ["distill.teacher_search=spiral"])
    with pytest.raises(ValueError, match="search"):
        Oracle(search="spiral")


def test_expert_label_with_continue_search_drives_to_the_goal() -> None:
    """The wrapper hands the env's ray test to the teacher; driven by its own labels, the
    searching teacher reaches held-out goals."""
    from envs.config import EnvConfig, ObservationConfig
    from envs.nav_env import CameraNavEnv
    from training.experts import ExpertLabel

    env = ExpertLabel(CameraNavEnv(EnvConfig(split="heldout", observation=ObservationConfig(
        camera=False, lidar=True))), "oracle", spec=TeacherSpec(0.2, "continue"))
    successes = 0
    for seed in range(6):
        _, info = env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(info["expert_action"])
            done = terminated or truncated
        successes += info["success"]
    env.close()
    assert successes == 6


def _walled(wall_from_y: float, robot_x: float = -1.5) -> dict:
    """The robot at (robot_x, 0) facing east towards the goal at (1.5, 0), which it sees; a
    wall at x = 0 runs from y = `wall_from_y` to the north wall, so the way round is south."""
    free = np.ones((40, 40), bool)
    free[int(round((wall_from_y + 2.0) / 0.1)):, 19:21] = False
    return {"occupancy": free, "grid_half_size_m": 2.0, "grid_resolution_m": 0.1,
            "goal": np.array([1.5, 0.0]), "pose": np.array([robot_x, 0.0, 0.0]),
            "scene": {"camera_fov_deg": 90.0}}


def _keep_label(info: dict, keep: bool, visible: bool | None) -> int:
    teacher = Oracle(camera_aware=True, keep_goal_in_view=keep)
    teacher.reset(info)
    return teacher.act(info, visible)


def test_keep_goal_in_view_drives_on_where_the_plan_would_turn_the_goal_away() -> None:
    # the gap lies 1.2 m south: the plan's waypoint is nearly 60 degrees right of the goal,
    # outside the view cone (0.8 x 45 degrees), and the plan turns right in place
    info = _walled(-1.2)
    assert _keep_label(info, keep=False, visible=True) == 4
    # a heading inside the cone still gains on the way round: drive forward-right, goal in view
    assert _keep_label(info, keep=True, visible=True) == 2
    # no goal in the image: the plan's label, unchanged
    assert _keep_label(info, keep=True, visible=False) == 4


def test_keep_goal_in_view_changes_nothing_when_the_plan_keeps_the_goal_in_view() -> None:
    info = _walled(-0.4)  # the plan's waypoint is 21 degrees off the goal: inside the cone
    # continuous commands, which tell the plan's heading from any other in the cone
    commands = []
    for keep in (False, True):
        teacher = Oracle(continuous=True, camera_aware=True, keep_goal_in_view=keep)
        teacher.reset(info)
        commands.append(teacher.act(info, True))
    np.testing.assert_array_equal(commands[0], commands[1])


def test_keep_goal_in_view_turns_away_when_no_heading_in_view_gains() -> None:
    # 0.4 m from the wall: every heading in the cone runs into it within the lookahead
    info = _walled(-1.2, robot_x=-0.4)
    assert _keep_label(info, keep=True, visible=True) == _keep_label(info, False, True) == 4


def test_keep_goal_in_view_needs_the_visibility_and_reaches_the_config() -> None:
    teacher = Oracle(camera_aware=True, keep_goal_in_view=True)
    assert teacher.reads_visibility
    teacher.reset(_walled(-1.2))
    with pytest.raises(ValueError, match="goal_visible"):
        teacher.act(_walled(-1.2))
    from training.experts import teacher_spec

    d = load_config("default", ["distill.teacher_keep_goal_in_view=true"]).distill
    spec = teacher_spec(d)
    assert spec.keep_goal_in_view and spec.as_dict()["keep_goal_in_view"] is True
    assert spec.build(continuous=False).keep_goal_in_view
    assert not teacher_spec(load_config("default").distill).keep_goal_in_view


def test_keep_goal_in_view_keeps_the_plans_clearance() -> None:
    # 0.5 m in front of the wall: the headings in the cone that gain run past the wall's
    # end inside the 0.15 m margin the plan keeps, so the teacher turns as the plan does...
    near = _walled(-1.2, robot_x=-0.6)
    teacher = Oracle(camera_aware=True, keep_goal_in_view=True, clearance_m=0.15)
    teacher.reset(near)
    assert teacher.act(near, True) == 4
    # ...where a teacher planning with no margin cuts past it, goal in view
    assert _keep_label(near, keep=True, visible=True) == 2
    # farther back, a heading in the cone clears the margin: forward-right, goal in view
    far = _walled(-1.2)
    teacher.reset(far)
    assert teacher.act(far, True) == 2
