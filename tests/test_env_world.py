"""The world built for speed shows and does what the first release's did: the same things in
the same places, the robot kept out of its own camera but drawn in videos, the same contacts,
and fast paths (image noise, planner field, geodesic lookup) equal to plain reference code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.config import EnvConfig, ObservationConfig
from envs.grid import Grid, _move_masks, _shift, geodesic_distance
from envs.imaging import NOISE_MARGIN, ImageNoise
from envs.nav_env import SEG_ROBOT, CameraNavEnv
from envs.randomize import sample_scene
from envs.scene import FAST, LEGACY
from eval.bench_env import contact_agreement

# ---------------------------------------------------------------------------------- image noise


def reference_noise(rgb: np.ndarray, contrast: float, brightness: float, field: np.ndarray | None,
                    blur: bool, oy: int, ox: int) -> np.ndarray:
    """The camera model written plainly: tone curve, 3x3 edge-replicated box mean, noise."""
    levels = np.arange(256, dtype=np.float32)
    lut = np.clip(np.round((levels - 128.0) * contrast + 128.0 + brightness), 0, 255)
    img = lut.astype(np.uint8)[rgb]
    if blur:
        h, w = img.shape[:2]
        padded = np.pad(img.astype(np.uint16), ((1, 1), (1, 1), (0, 0)), mode="edge")
        img = (sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
               // 9).astype(np.uint8)
    if field is not None:
        h, w = img.shape[:2]
        img = np.clip(img.astype(np.int32) + field[oy:oy + h, ox:ox + w], 0, 255).astype(np.uint8)
    return img


@pytest.mark.parametrize("std", [0.0, 5.0, 40.0], ids=["no-noise", "int16-index", "int32-index"])
@pytest.mark.parametrize("blur", [False, True])
def test_image_noise_equals_the_plain_camera_model(std: float, blur: bool) -> None:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    rgba[:4] = 255  # saturated rows exercise the clips
    contrast, brightness = 1.15, -12.0
    noise = ImageNoise(np.random.default_rng(7), 24, 32, contrast, brightness, std)
    field = (None if std == 0 else np.round(np.random.default_rng(7).standard_normal(
        (24 + NOISE_MARGIN, 32 + NOISE_MARGIN, 3)) * std).astype(np.int32))
    for crop_y, crop_x in [(0.0, 0.0), (0.37, 0.81), (0.999, 0.5)]:
        got = noise.apply(rgba, blur, crop_y, crop_x)
        oy, ox = int(crop_y * (NOISE_MARGIN + 1)), int(crop_x * (NOISE_MARGIN + 1))
        want = reference_noise(rgba[..., :3], contrast, brightness, field, blur, oy, ox)
        assert got.dtype == np.uint8 and got.shape == (24, 32, 3) and got.flags.c_contiguous
        assert np.array_equal(got, want)


# ---------------------------------------------------------------------------------- planner


def relaxed_field(grid: Grid, goal_xy: np.ndarray) -> np.ndarray:
    """The distance field by relaxing every move until nothing changes."""
    dist = np.full(grid.free.shape, np.inf)
    gi, gj = grid.cell(goal_xy)
    dist[gi, gj] = float(np.hypot(*(grid.centre(gi, gj) - goal_xy)))
    masks = _move_masks(grid.free)
    while True:
        before = dist
        for dy, dx, cost, ok in masks:
            cand = _shift(dist, dy, dx, np.inf) + cost * grid.resolution_m
            dist = np.where(ok & (cand < dist), cand, dist)
        if np.array_equal(before, dist):
            return dist


def test_distance_field_and_geodesic_lookup_equal_plain_versions() -> None:
    rng = np.random.default_rng(5)
    cfg = EnvConfig()
    for _ in range(6):
        scene, grid, field = sample_scene(rng, cfg)
        assert np.array_equal(field, relaxed_field(grid, np.asarray(scene.goal_xy)))
        for xy in rng.uniform(-2.2, 2.2, (50, 2)):
            i = int(np.clip((xy[1] + 2.0) / 0.1, 0, grid.n - 1))
            j = int(np.clip((xy[0] + 2.0) / 0.1, 0, grid.n - 1))
            rows, cols = slice(max(i - 1, 0), i + 2), slice(max(j - 1, 0), j + 2)
            cy = -2.0 + (np.arange(grid.n)[rows] + 0.5) * 0.1 - xy[1]
            cx = -2.0 + (np.arange(grid.n)[cols] + 0.5) * 0.1 - xy[0]
            want = float(np.min(field[rows, cols] + np.sqrt(cy[:, None] ** 2 + cx[None, :] ** 2)))
            assert geodesic_distance(grid, field, xy) == want


# ---------------------------------------------------------------------------------- the world


def labels(env: CameraNavEnv) -> np.ndarray:
    """0 sky, 1 floor, 2 walls/obstacles, 3 goal, 4 robot for the env's current frame."""
    _, _, seg = env._render()
    body = np.where(seg >= 0, seg & ((1 << 24) - 1), -1)
    out = np.zeros(seg.shape, np.int8)
    out[body == env.bodies.floor] = 1
    out[np.isin(body, env.bodies.walls + env.bodies.obstacles)] = 2
    out[body == env.bodies.goal] = 3
    out[body == env.bodies.robot] = 4
    return out


def test_fast_world_shows_the_first_release_world() -> None:
    """Same seed, same actions: the same things at the same pixels (cylinders lost half their
    sides and the floor no longer reaches under the walls, so a few edge pixels differ)."""
    obs = ObservationConfig(segmentation=True)
    fast = CameraNavEnv(EnvConfig(observation=obs), geometry=FAST)
    old = CameraNavEnv(EnvConfig(observation=obs), geometry=LEGACY)
    agree, frames = 0.0, 0
    for seed in range(4):
        fast.reset(seed=seed)
        old.reset(seed=seed)
        for t in range(25):
            action = (0, 0, 1, 0, 2, 3, 0, 4)[t % 8]
            fast.step(action)
            old.step(action)
            a, b = labels(fast), labels(old)
            agree += float(np.mean(a == b))
            frames += 1
            assert not (a == 4).any()  # the robot never shows in its own camera
    fast.close()
    old.close()
    assert agree / frames >= 0.97


def test_robot_is_drawn_in_the_top_down_view() -> None:
    env = CameraNavEnv(EnvConfig(observation=ObservationConfig(width=16, height=16)),
                       render_mode="rgb_array", render_size=128)
    _, info = env.reset(seed=2)
    with_robot = env.render()
    env._set_pose(50.0, 50.0, 0.0)  # far outside the top-down view
    without = env.render()
    assert with_robot.shape == without.shape == (128, 128, 3)
    differs = np.any(with_robot != without, axis=2)
    ys, xs = np.nonzero(differs)
    assert differs.sum() > 20
    # the difference sits where the robot was
    x, y = info["pose"][:2]
    half = env.cfg.arena_half_size_m + 0.15
    px, py = (x + half) / (2 * half) * 128, (half - y) / (2 * half) * 128
    assert math.hypot(xs.mean() - px, ys.mean() - py) < 12
    env.close()


def test_segmentation_never_labels_the_robot() -> None:
    env = CameraNavEnv(EnvConfig(observation=ObservationConfig(segmentation=True)))
    env.reset(seed=1)
    for t in range(60):
        obs, *_ = env.step((0, 3, 0, 4)[t % 4])
        assert not (obs[..., 3] == SEG_ROBOT).any()
    env.close()


def test_contacts_match_the_first_release_loop() -> None:
    """One control step from the same pose, the first release's loop (cylinder robot, velocity
    and contacts at every 60 Hz solver step) against the env's drive."""
    result = contact_agreement(rates_hz=(60,), episodes=2, steps=40, seed=3)
    (row,) = result["rates"]
    assert result["reference"]["collision_rate"] > 0.05  # contacts were exercised
    assert row["flag_agreement"] >= 0.97
    assert row["mean_position_diff_mm"] < 2.0


def test_bad_geometry_is_one_line_naming_the_field() -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match=r"^Geometry\.floor: 'carpet' is not one of") as err:
        replace(FAST, floor="carpet")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="cylinder_sides"):
        replace(FAST, cylinder_sides=2)


def test_world_build_comes_from_the_config() -> None:
    """`env.world_build` picks the geometry; a bad value is one line naming the choices."""
    from envs.config import ConfigError

    small = ObservationConfig(width=16, height=16)
    assert CameraNavEnv(EnvConfig(observation=small)).geometry == FAST
    old = CameraNavEnv(EnvConfig(observation=small, world_build="first-release"))
    assert old.geometry == LEGACY
    old.close()
    with pytest.raises(ConfigError, match=r"^env\.world_build: .*fast, first-release$"):
        EnvConfig(world_build="marble")
