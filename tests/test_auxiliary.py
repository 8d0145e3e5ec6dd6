"""The auxiliary task of distillation (`distill.aux_weight`): its targets, its buffer, its
gradient and its config checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from envs.config import ConfigError, EnvConfig
from envs.nav_env import CameraNavEnv
from training.config import load_config
from training.distill import (
    FrameBuffer,
    auxiliary_imitation_loss,
    distribution_loss,
    imitation_loss,
    make_student,
    near_weights,
)
from training.experts import GOAL_SCALE_M, ExpertLabel, auxiliary_size


def test_the_target_holds_lidar_and_goal_in_the_robots_frame() -> None:
    env = ExpertLabel(CameraNavEnv(EnvConfig()), "oracle", auxiliary=True)
    _, info = env.reset(seed=3)
    target = info["aux_target"]
    base = env.unwrapped
    rays = base.cfg.observation.lidar_rays
    assert target.shape == (auxiliary_size(base.cfg.observation),) == (rays + 5,)
    assert target.dtype == np.float32 and np.all(np.abs(target) <= 1.0)
    dx, dy = np.asarray(base.scene.goal_xy) - base._xy()
    bearing = math.atan2(dy, dx) - base._heading
    assert target[rays] == pytest.approx(min(math.hypot(dx, dy) / GOAL_SCALE_M, 1), abs=1e-5)
    assert target[rays + 1:rays + 3] == pytest.approx([math.cos(bearing), math.sin(bearing)],
                                                        abs=1e-5)
    # the lidar part is the env's own lidar, as fractions of its range
    expected = base.lidar() / base.cfg.observation.lidar_range_m
    assert target[:rays] == pytest.approx(expected, abs=1e-6)
    _, _, _, _, info = env.step(0)
    assert not np.array_equal(info["aux_target"], target)  # it follows the robot
    env.close()


def test_without_the_auxiliary_task_no_target_is_computed() -> None:
    env = ExpertLabel(CameraNavEnv(EnvConfig()), "oracle")
    _, info = env.reset(seed=3)
    assert "aux_target" not in info and "expert_action" in info
    env.close()


def test_the_buffer_keeps_each_frames_target_beside_it_across_the_ring() -> None:
    buffer = FrameBuffer(4, (1, 2, 2), (), np.int64, aux_size=3)
    for step in range(6):  # wraps: frames 2..5 stay
        obs = np.full((1, 1, 2, 2), step, np.uint8)
        buffer.add(obs, np.array([step]), np.full((1, 3), step / 10, np.float32))
    frames, actions, aux = buffer.sample(np.random.default_rng(0), 32)
    assert set(actions.tolist()) == {2, 3, 4, 5}
    assert np.all(frames[:, 0, 0, 0] == actions)
    assert np.allclose(aux, actions[:, None] / 10)
    plain = FrameBuffer(4, (1, 2, 2), (), np.int64)
    plain.add(np.zeros((1, 1, 2, 2), np.uint8), np.array([1]))
    assert plain.sample(np.random.default_rng(0), 2)[2] is None


def test_the_auxiliary_loss_shapes_the_cnn_and_not_the_action_head() -> None:
    cfg = load_config("tiny", ["distill.aux_weight=1"])
    student = make_student(cfg, torch.device("cpu"))
    size = auxiliary_size(cfg.env.observation)
    head = torch.nn.Linear(student.features_extractor.features_dim, size)
    obs_shape = student.observation_space.shape
    images = torch.randint(0, 256, (8, *obs_shape), dtype=torch.uint8).float()
    labels = torch.randint(0, 5, (8,))
    loss, _, aux = auxiliary_imitation_loss(student, head, images, labels,
                                            torch.rand(8, size), continuous=False)
    aux.backward()
    cnn = [p.grad for p in student.features_extractor.parameters()]
    assert all(g is not None for g in cnn) and any(g.abs().sum() > 0 for g in cnn)
    assert all(p.grad is None for p in student.action_net.parameters())
    # the imitation part is the plain imitation loss of the same policy
    plain, _ = imitation_loss(student, images, labels, continuous=False)
    assert loss.item() == pytest.approx(plain.item(), rel=1e-5)


def test_bad_auxiliary_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="aux_weight: must be >= 0"):
        load_config("tiny", ["distill.aux_weight=-1"])
    with pytest.raises(ConfigError, match="aux_weight: the auxiliary loss trains a feed-forward"):
        load_config("default", ["distill.aux_weight=1", "arch.lstm_hidden=16"])


def test_near_frames_weigh_one_plus_near_weight_by_their_nearest_lidar_range() -> None:
    rays, range_m = 4, 3.0
    aux = np.ones((3, rays + 5), np.float32)
    aux[0, 2] = 0.25 / range_m  # 0.25 m from an obstacle: near at 0.3 m
    aux[1, :rays] = 0.35 / range_m  # 0.35 m all round: not near
    weights = near_weights(aux, rays, range_m, near_range_m=0.3, near_weight=2.0)
    assert weights.tolist() == pytest.approx([3.0, 1.0, 1.0])
    # the goal entries after the lidar never count as ranges
    aux[2, rays:] = 0.0
    assert near_weights(aux, rays, range_m, 0.3, 2.0)[2].item() == 1.0


def test_frame_weights_make_the_imitation_loss_a_weighted_mean_over_frames() -> None:
    cfg = load_config("tiny", ["distill.aux_weight=1"])
    student = make_student(cfg, torch.device("cpu"))
    obs_shape = student.observation_space.shape
    images = torch.randint(0, 256, (2, *obs_shape), dtype=torch.uint8).float()
    labels = torch.tensor([0, 3])
    dist = student.get_distribution(images)
    per_frame = torch.nn.functional.cross_entropy(dist.distribution.logits, labels,
                                                  reduction="none").tolist()
    loss, _ = distribution_loss(dist, labels, False, frame_weights=torch.tensor([3.0, 1.0]))
    assert loss.item() == pytest.approx((3 * per_frame[0] + per_frame[1]) / 4, rel=1e-5)
    # with class weights too, each frame weighs its class weight times its frame weight
    classes = torch.tensor([0.5, 1, 1, 2.0, 1])
    loss, _ = distribution_loss(dist, labels, False, classes,
                                frame_weights=torch.tensor([3.0, 1.0]))
    expected = (1.5 * per_frame[0] + 2 * per_frame[1]) / 3.5
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # equal frame weights are the plain loss
    plain, _ = distribution_loss(dist, labels, False, classes)
    even, _ = distribution_loss(dist, labels, False, classes, frame_weights=torch.ones(2))
    assert even.item() == pytest.approx(plain.item(), rel=1e-6)


def test_bad_near_weight_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="near_weight: must be >= 0"):
        load_config("tiny", ["distill.aux_weight=1", "distill.near_weight=-1"])
    with pytest.raises(ConfigError, match="set distill.aux_weight > 0 too"):
        load_config("tiny", ["distill.aux_weight=0", "distill.near_weight=2"])
    with pytest.raises(ConfigError, match="near_range_m: 5.0 is outside"):
        load_config("tiny", ["distill.aux_weight=1", "distill.near_range_m=5"])
