"""Behaviour of the navigation env that users rely on: API checks, seeding, observations, info,
rewards and episode ends, config errors, the randomization sampler, splits, the oracle, frame
stacking and memory. Small cameras (40x40) keep it fast wherever the size is not under test."""

from __future__ import annotations

import colorsys
import dataclasses
import gc
import math
import os
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs import ENV_IDS, ConfigError, EnvConfig
from envs.config import SPLITS, RandomizationConfig, from_dict
from envs.nav_env import SEG_FLOOR, SEG_GOAL, SEG_OBSTACLE, SEG_ROBOT
from envs.randomize import sample_scene, sample_values
from envs.wrappers import ChannelFrameStack
from policies.oracle import Oracle

SMALL = {"width": 40, "height": 40}
ALL_SENSORS = {**SMALL, "depth": True, "segmentation": True, "lidar": True, "proprio": True,
               "privileged": True}
VECTOR_ONLY = {"camera": False, "lidar": True, "proprio": True, "privileged": True}
RANGES = RandomizationConfig()
FIELDS = dataclasses.fields(RANGES)
DRAWS = 300
# strength 2 doubles the spread only where the field's limits do not clip it
UNCLIPPED_AT_2 = ("light_azimuth_deg", "camera_pitch_deg", "brightness")


def make(env_id: str = ENV_IDS[0], **config: Any) -> gym.Env:
    """`gymnasium.make` with a config dict, the path users take."""
    return gym.make(env_id, config=config) if config else gym.make(env_id)


def small(env_id: str = ENV_IDS[0], **config: Any) -> gym.Env:
    """An env with a 40x40 camera unless `observation` says otherwise."""
    config.setdefault("observation", SMALL)
    return make(env_id, **config)


def fixed_action(env: gym.Env, t: int) -> Any:
    """A deterministic action sequence that drives, arcs and turns."""
    if isinstance(env.action_space, gym.spaces.Discrete):
        return (0, 0, 1, 0, 2, 3, 0, 4)[t % 8]
    return np.array([0.5 + 0.5 * math.cos(0.3 * t), math.sin(0.17 * t)], dtype=np.float32)


def rollout(env: gym.Env, seed: int, steps: int) -> tuple[list[Any], list[np.ndarray]]:
    """Observations and poses over `steps` fixed actions, resetting when an episode ends."""
    obs, info = env.reset(seed=seed)
    observations, poses = [obs], [info["pose"]]
    for t in range(steps):
        obs, _, terminated, truncated, info = env.step(fixed_action(env, t))
        observations.append(obs)
        poses.append(info["pose"])
        if terminated or truncated:
            obs, info = env.reset()
            observations.append(obs)
            poses.append(info["pose"])
    return observations, poses


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def run_oracle(env: gym.Env, seed: int) -> tuple[bool, bool, dict, float]:
    """One oracle episode: (terminated, truncated, last info, last reward)."""
    oracle = Oracle(continuous=not isinstance(env.action_space, gym.spaces.Discrete))
    _, info = env.reset(seed=seed)
    oracle.reset(info)
    while True:
        _, reward, terminated, truncated, info = env.step(oracle.act(info))
        if terminated or truncated:
            return terminated, truncated, info, reward


def rss_mb() -> float:
    """Resident set size of this process (MB)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def in_bands(hue_deg: float, bands: tuple[tuple[float, float], ...], tol: float = 0.5) -> bool:
    """Whether a hue lies in one of the bands, allowing for the 0/360 wrap."""
    return any(lo - tol <= h <= hi + tol for lo, hi in bands for h in (hue_deg, hue_deg + 360.0))


def hue_deg(rgb: tuple[float, float, float]) -> float:
    return colorsys.rgb_to_hsv(*rgb)[0] * 360.0


# ---------------------------------------------------------------------------------- API checks


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("observation", [None, ALL_SENSORS, VECTOR_ONLY],
                         ids=["default", "all-sensors", "vector-only"])
def test_check_env_passes(env_id: str, observation: dict | None) -> None:
    env = make(env_id) if observation is None else make(env_id, observation=observation)
    try:
        # the checkers want the bare env: gym.make's checker wrappers would be flagged
        gym_check_env(env.unwrapped, skip_render_check=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # SB3's advice (image layout, bounds) must be clean
            sb3_check_env(env.unwrapped, warn=True, skip_render_check=True)
    finally:
        env.close()


def test_render_gives_topdown_rgb() -> None:
    env = gym.make(ENV_IDS[0], config={"observation": SMALL}, render_mode="rgb_array",
                   render_size=96)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8
    env.close()


def test_camera_mount_moves_the_eye_along_the_heading() -> None:
    """The eye sits `camera_mount_m` ahead of the base centre, whatever the heading; the same
    scene seen from further back differs."""
    images, eyes = [], []
    for mount in (0.10, -0.10):
        env = gym.make(ENV_IDS[0], config={"observation": {**SMALL, "camera_mount_m": mount}})
        obs, info = env.reset(seed=3)
        x, y, yaw = info["pose"]
        eye, _ = env.unwrapped._camera_pose()
        assert eye[0] == pytest.approx(x + mount * math.cos(yaw))
        assert eye[1] == pytest.approx(y + mount * math.sin(yaw))
        images.append(obs)
        eyes.append(eye)
        env.close()
    assert eyes[0][2] == eyes[1][2]
    assert not np.array_equal(images[0], images[1])


# ---------------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_rollout(env_id: str) -> None:
    # a short max_steps puts several resets inside the 300 steps
    a, b = small(env_id, max_steps=90), small(env_id, max_steps=90)
    obs_a, poses_a = rollout(a, seed=123, steps=300)
    obs_b, poses_b = rollout(b, seed=123, steps=300)
    assert len(obs_a) == len(obs_b) > 301
    assert all(same_bytes(x, y) for x, y in zip(obs_a, obs_b))
    assert all(same_bytes(x, y) for x, y in zip(poses_a, poses_b))
    a.close()
    b.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_different_seeds_differ(env_id: str) -> None:
    env = small(env_id)
    obs_a, info_a = env.reset(seed=1)
    obs_b, info_b = env.reset(seed=2)
    assert not same_bytes(obs_a, obs_b)
    assert not np.array_equal(info_a["pose"], info_b["pose"])
    assert info_a["scene"] != info_b["scene"]
    env.close()


# ---------------------------------------------------------------------------------- observations


def test_default_observation_is_64x64_rgb_only() -> None:
    env = make()
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box)
    assert space.shape == (64, 64, 3) and space.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and space.contains(obs)
    env.close()


@pytest.mark.parametrize(("extra", "channels"), [
    ({"depth": True}, 4), ({"segmentation": True}, 4),
    ({"depth": True, "segmentation": True}, 5)])
def test_depth_and_segmentation_add_channels(extra: dict, channels: int) -> None:
    env = small(observation={**SMALL, **extra})
    obs, _ = env.reset(seed=3)
    assert env.observation_space.shape == (40, 40, channels)
    assert obs.shape == (40, 40, channels) and obs.dtype == np.uint8
    extra_channel = obs[..., 3]
    if extra.get("depth"):
        assert extra_channel.min() < extra_channel.max()  # near floor and far wall differ
    if "segmentation" in extra and "depth" not in extra:
        labels = set(np.unique(extra_channel).tolist())
        assert labels <= {SEG_FLOOR, SEG_OBSTACLE, SEG_GOAL, SEG_ROBOT}
        assert SEG_FLOOR in labels and SEG_OBSTACLE in labels
    env.close()


def test_vectors_give_dict_observation() -> None:
    env = make(observation=ALL_SENSORS)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict)
    assert space["image"].shape == (40, 40, 5)
    assert space["state"].shape == (32 + 4 + 7,) and space["state"].dtype == np.float32
    obs, _ = env.reset(seed=0)
    assert space.contains(obs)
    env.close()


def test_camera_off_gives_plain_vector() -> None:
    env = make(observation={"camera": False, "lidar": True, "lidar_rays": 16})
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box) and space.shape == (16,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16,) and obs.dtype == np.float32 and np.all(np.isfinite(obs))
    env.close()


# ---------------------------------------------------------------------------------- reset info


def test_reset_info_has_privileged_state() -> None:
    env = small()
    _, info = env.reset(seed=0)
    expected = {"pose", "goal", "distance", "geodesic_distance", "shortest_path_length",
                "path_length", "collisions", "collided", "success", "steps", "reward_terms",
                "scene", "occupancy", "grid_half_size_m", "grid_resolution_m"}
    assert expected <= info.keys()
    assert info["pose"].shape == (3,) and info["goal"].shape == (2,)
    assert info["occupancy"].dtype == bool and info["occupancy"].ndim == 2
    assert info["path_length"] == 0 and info["collisions"] == 0 and info["steps"] == 0
    assert not info["success"]
    # SPL's shortest path ends on the success disk around the goal, not at its centre
    radius = env.unwrapped.cfg.goal_radius_m
    assert info["shortest_path_length"] == pytest.approx(info["geodesic_distance"] - radius)
    assert "layout_seed" in info["scene"]
    env.close()


def test_start_goal_distances_are_consistent() -> None:
    env = small(observation={"width": 16, "height": 16})
    cfg: EnvConfig = env.unwrapped.cfg
    for seed in range(25):
        _, info = env.reset(seed=seed)
        euclid = float(np.linalg.norm(info["goal"] - info["pose"][:2]))
        assert info["distance"] == pytest.approx(euclid)
        assert info["distance"] >= cfg.min_goal_distance_m
        assert np.isfinite(info["geodesic_distance"]), f"seed {seed}: goal unreachable"
        assert info["geodesic_distance"] >= info["distance"] - cfg.grid_resolution_m
    env.close()


# ---------------------------------------------------------------------------------- reward, ends


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reward_is_sum_of_terms(env_id: str) -> None:
    env = small(env_id)
    env.reset(seed=4)
    for t in range(60):
        _, reward, terminated, truncated, info = env.step(fixed_action(env, t))
        terms = info["reward_terms"]
        assert set(terms) == {"progress", "success", "collision", "time"}
        assert reward == pytest.approx(sum(terms.values()), abs=1e-12)
        if terminated or truncated:
            env.reset()
    env.close()


def test_success_terminates() -> None:
    env = small()
    terminated, truncated, info, reward = run_oracle(env, seed=11)
    cfg: EnvConfig = env.unwrapped.cfg
    assert terminated and not truncated and info["success"]
    assert info["distance"] <= cfg.goal_radius_m
    assert info["reward_terms"]["success"] == cfg.reward.success
    assert reward >= cfg.reward.success + cfg.reward.time + cfg.reward.collision
    env.close()


def test_truncation_at_max_steps() -> None:
    env = small(max_steps=5)
    env.reset(seed=0)
    for step in range(1, 6):
        _, _, terminated, truncated, info = env.step(3)  # turning in place never arrives
        assert not terminated
        assert truncated == (step == 5)
        assert info["steps"] == step
    env.close()


def test_collision_counts_and_can_terminate() -> None:
    env = small(terminate_on_collision=True)
    cfg: EnvConfig = env.unwrapped.cfg
    for seed in range(10):
        env.reset(seed=seed)
        terminated = truncated = False
        while not (terminated or truncated):
            _, _, terminated, truncated, info = env.step(0)  # straight ahead, into something
        if info["collided"]:
            assert terminated and info["collisions"] == 1
            assert info["reward_terms"]["collision"] == cfg.reward.collision
            break
    else:
        pytest.fail("driving straight never hit a wall or obstacle in 10 episodes")
    env.close()


# ---------------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(("data", "field_name"), [
    ({"max_stepz": 10}, "env.max_stepz"),
    ({"max_steps": -1}, "env.max_steps"),
    ({"robot_radius_m": -0.1}, "env.robot_radius_m"),
    ({"strength": -0.5}, "env.strength"),
    ({"observation": {"width": -4}}, "env.observation.width"),
    ({"randomization": {"light_ambient": [0.9, 0.2]}}, "env.randomization.light_ambient"),
    ({"randomization": {"light_ambient": [0.0, 0.5]}}, "env.randomization.light_ambient"),
    ({"randomization": {"camera_fov_deg": [80.0, 170.0]}}, "env.randomization.camera_fov_deg"),
    ({"split": "test"}, "env.split"),
    ({"observation": {"frame_stride": 0}}, "env.observation.frame_stride"),
    ({"observation": {"camera_mount_m": -0.2}}, "env.observation.camera_mount_m"),
])
def test_bad_config_is_one_line_naming_the_field(data: dict, field_name: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(EnvConfig, data, "env")
    message = str(err.value)
    assert message.startswith(field_name + ":")
    assert "\n" not in message


def test_bad_config_fails_at_make() -> None:
    with pytest.raises(ConfigError, match="env.split"):
        make(split="validation")


# ---------------------------------------------------------------------------------- randomization


def draws(strength: Any, seed: int = 0, n: int = DRAWS) -> dict[str, np.ndarray]:
    """`n` draws of every randomization field, one array per field."""
    rng = np.random.default_rng(seed)
    samples = [sample_values(rng, RANGES, strength) for _ in range(n)]
    return {f.name: np.array([s[f.name] for s in samples]) for f in FIELDS}


def anchor(name: str) -> float:
    low, high = getattr(RANGES, name)
    kind = next(f for f in FIELDS if f.name == name).metadata["anchor"]
    return {"low": low, "high": high, "mid": 0.5 * (low + high)}[kind]


def test_strength_one_stays_in_range_with_variance() -> None:
    values = draws(1.0)
    for name, v in values.items():
        low, high = getattr(RANGES, name)
        assert low <= v.min() and v.max() <= high, name
        assert v.std() > 0, f"{name} never varies"


def test_strength_zero_is_the_anchor() -> None:
    for name, v in draws(0.0).items():
        assert np.all(v == anchor(name)), name


@pytest.mark.parametrize("name", UNCLIPPED_AT_2)
def test_strength_two_doubles_the_spread(name: str) -> None:
    ratio = draws(2.0, seed=1)[name].std() / draws(1.0, seed=2)[name].std()
    assert 1.75 < ratio < 2.25


def test_strength_limits_clip() -> None:
    for f in FIELDS:
        lo, hi = f.metadata["limits"]
        v = draws(5.0, n=50)[f.name]
        assert lo <= v.min() and v.max() <= hi, f.name


def test_per_group_strength_isolates_a_group() -> None:
    values = draws({"lighting": 1.0}, n=100)
    for f in FIELDS:
        if f.metadata["group"] == "lighting":
            assert values[f.name].std() > 0, f.name
        else:
            assert np.all(values[f.name] == anchor(f.name)), f.name


def test_unknown_group_is_rejected() -> None:
    with pytest.raises(ValueError, match="lightning"):
        sample_values(np.random.default_rng(0), RANGES, {"lightning": 1.0})


# ---------------------------------------------------------------------------------- splits


def test_split_appearances_are_disjoint() -> None:
    train, heldout = SPLITS["train"], SPLITS["heldout"]
    for a_lo, a_hi in train.obstacle_hue_bands_deg + (train.goal_hue_band_deg,):
        for b_lo, b_hi in heldout.obstacle_hue_bands_deg + (heldout.goal_hue_band_deg,):
            assert not (a_lo < b_hi and b_lo < a_hi), ((a_lo, a_hi), (b_lo, b_hi))
    assert not set(train.texture_families) & set(heldout.texture_families)


def test_splits_never_share_a_layout_and_keep_their_appearance() -> None:
    cfg = EnvConfig()
    rng = np.random.default_rng(0)
    seeds: dict[str, set[int]] = {}
    for split, parity in (("train", 0), ("heldout", 1)):
        appearance = SPLITS[split]
        seeds[split] = set()
        for _ in range(20):
            scene, _, _ = sample_scene(rng, cfg, split=split)
            assert scene.layout_seed % 2 == parity
            seeds[split].add(scene.layout_seed)
            for rgb in (scene.wall_rgb, *scene.obstacle_rgb):
                assert in_bands(hue_deg(rgb), appearance.obstacle_hue_bands_deg), (split, rgb)
            assert in_bands(hue_deg(scene.goal_rgb), (appearance.goal_hue_band_deg,))
            for texture in (scene.floor_texture, scene.wall_texture, scene.obstacle_texture):
                assert texture is None or texture.rsplit("_", 1)[0] in appearance.texture_families
    assert not seeds["train"] & seeds["heldout"]


def test_env_split_reaches_the_layout_seed() -> None:
    env = small(split="heldout", observation={"width": 16, "height": 16})
    assert all(env.reset(seed=s)[1]["scene"]["layout_seed"] % 2 == 1 for s in range(5))
    _, info = env.reset(seed=0, options={"split": "train"})
    assert info["scene"]["layout_seed"] % 2 == 0
    env.close()


# ---------------------------------------------------------------------------------- oracle


def test_oracle_reaches_heldout_goals() -> None:
    env = small(split="heldout")
    episodes = 15
    successes = sum(run_oracle(env, seed=50_000 + k)[2]["success"] for k in range(episodes))
    assert successes / episodes >= 0.95
    env.close()


def test_camera_aware_oracle_reaches_goals_and_searches_left_only() -> None:
    """The distillation teacher: memoryless, so it must succeed without remembering the goal,
    and out of view it never turns right in place (the student could not tell which way)."""
    from policies.oracle import heading_error

    env = small(split="heldout")
    successes = 0
    for k in range(10):
        obs, info = env.reset(seed=60_000 + k)
        oracle = Oracle(camera_aware=True)
        oracle.reset(info)
        done = False
        while not done:
            action = oracle.act(info)
            out_of_view = abs(heading_error(np.asarray(info["pose"]),
                                            np.asarray(info["goal"]))) > oracle.half_fov_rad
            assert not (out_of_view and action == 4)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        successes += info["success"]
    assert successes >= 9
    env.close()


def test_oracle_drives_the_continuous_env() -> None:
    env = small(ENV_IDS[1], split="heldout")
    assert run_oracle(env, seed=7)[2]["success"]
    env.close()


# ---------------------------------------------------------------------------------- wrappers


def test_channel_frame_stack_puts_newest_last() -> None:
    k = 3
    raw = small()
    stacked = ChannelFrameStack(small(), k)
    assert stacked.observation_space.shape == (40, 40, 3 * k)
    frame, _ = raw.reset(seed=9)
    obs, _ = stacked.reset(seed=9)
    assert obs.shape == (40, 40, 3 * k)
    assert all(same_bytes(obs[..., 3 * i:3 * i + 3], frame) for i in range(k))
    for t in range(5):
        previous = obs
        frame = raw.step(fixed_action(raw, t))[0]
        obs = stacked.step(fixed_action(raw, t))[0]
        assert same_bytes(obs[..., -3:], frame)  # same seed, same actions: same newest frame
        assert same_bytes(obs[..., :-3], previous[..., 3:])  # older frames shift left
    raw.close()
    stacked.close()


def test_strided_frame_stack_holds_frames_stride_steps_apart() -> None:
    k, stride = 3, 2
    raw = small()
    stacked = ChannelFrameStack(small(), k, stride)
    assert stacked.observation_space.shape == (40, 40, 3 * k)
    frames = [raw.reset(seed=9)[0]]
    obs, _ = stacked.reset(seed=9)
    assert all(same_bytes(obs[..., 3 * i:3 * i + 3], frames[0]) for i in range(k))
    for t in range(7):
        frames.append(raw.step(fixed_action(raw, t))[0])
        obs = stacked.step(fixed_action(raw, t))[0]
        newest = len(frames) - 1
        for slot in range(k):  # oldest first: steps t-4, t-2, t (the first frame before that)
            want = frames[max(0, newest - (k - 1 - slot) * stride)]
            assert same_bytes(obs[..., 3 * slot:3 * slot + 3], want), (t, slot)
    raw.close()
    stacked.close()


def test_channel_frame_stack_rejects_non_images() -> None:
    with pytest.raises(ValueError, match="image"):
        ChannelFrameStack(make(observation=VECTOR_ONLY), 2)


# ---------------------------------------------------------------------------------- memory


def test_resets_do_not_grow_memory() -> None:
    env = small(observation={"width": 16, "height": 16})
    for seed in range(20):  # textures, caches and allocator pools settle first
        env.reset(seed=seed)
    gc.collect()
    before = rss_mb()
    for seed in range(20, 170):
        env.reset(seed=seed)
    gc.collect()
    growth = rss_mb() - before
    env.close()
    assert growth < 5.0, f"RSS grew {growth:.1f} MB over 150 resets"
