"""The clearance-keeping teacher: its cost field on hand-checked grids, and the paths it gives."""

from __future__ import annotations

import numpy as np
import pytest

from envs.config import ConfigError, EnvConfig, ObservationConfig
from envs.grid import Grid, clearance_cost, distance_field, next_waypoint
from envs.nav_env import CameraNavEnv
from policies.oracle import Oracle
from training.config import load_config


def _corridor() -> Grid:
    """A 2 m x 2 m grid at 0.1 m whose only free cells form a 9-cell-wide corridor along x."""
    free = np.zeros((20, 20), bool)
    free[4:13, :] = True  # rows 4..12: the corridor's middle row is 8
    return Grid(free, 1.0, 0.1)


def test_clearance_cost_by_hand() -> None:
    grid = _corridor()
    cost = clearance_cost(grid, clearance_m=0.2, weight=4.0)
    # edge row 4: its centre is half a cell (0.05 m) from the wall; clearance = 1 cell centre
    # distance (0.1 m) - 0.05 m = 0.05 m, shortfall (1 - 0.05 / 0.2) = 0.75 -> 1 + 4 * 0.75
    assert cost[4, 10] == pytest.approx(4.0)
    # row 5: 0.2 - 0.05 = 0.15 m clear -> shortfall 0.25 -> 2.0
    assert cost[5, 10] == pytest.approx(2.0)
    # rows 6..10 are at least 0.25 m clear: no extra cost
    assert np.all(cost[6:11, 10] == 1.0)
    assert np.all(clearance_cost(grid, 0.0) == 1.0)


def test_costed_field_keeps_to_the_middle_and_plain_field_is_unchanged() -> None:
    grid = _corridor()
    goal = grid.centre(4, 18)  # the goal sits at the corridor's edge
    plain = distance_field(grid, goal)
    assert np.allclose(plain, distance_field(grid, goal, None), equal_nan=True)
    costed = distance_field(grid, goal, clearance_cost(grid, 0.3))
    start = grid.centre(4, 1)  # start at the same edge, far away
    # the plain field runs along the edge; the costed one heads for the middle rows (6..10)
    assert grid.cell(next_waypoint(grid, plain, start, 0.45))[0] <= 5
    assert grid.cell(next_waypoint(grid, costed, start, 0.45))[0] >= 7


def test_clearance_teacher_drives_further_from_obstacles() -> None:
    """Driven by its own labels over held-out episodes, the clearance teacher still reaches
    every goal, and its closest approach to any wall or obstacle (lidar) is never nearer and
    on average at least 4 cm further than the shortest-path teacher's."""
    env = CameraNavEnv(EnvConfig(split="heldout", observation=ObservationConfig(
        camera=False, lidar=True)))
    closest = {}
    for clearance in (0.0, 0.2):
        teacher, nearest = Oracle(camera_aware=True, clearance_m=clearance), []
        for seed in range(8):
            obs, info = env.reset(seed=seed)
            teacher.reset(info)
            done, near = False, np.inf
            while not done:
                obs, _, terminated, truncated, info = env.step(teacher.act(info))
                done = terminated or truncated
                near = min(near, float(obs.min()))
            assert info["success"], (clearance, seed)
            nearest.append(near * env.cfg.observation.lidar_range_m)
        closest[clearance] = np.array(nearest)
    env.close()
    assert np.all(closest[0.2] >= closest[0.0] - 1e-6)
    assert closest[0.2].mean() >= closest[0.0].mean() + 0.04


def test_teacher_clearance_is_validated() -> None:
    assert load_config("default", ["distill.teacher_clearance_m=0.2"]) \
        .distill.teacher_clearance_m == 0.2
    with pytest.raises(ConfigError, match=r"^distill\.teacher_clearance_m: 3\.0 is outside"):
        load_config("default", ["distill.teacher_clearance_m=3.0"])
