"""The previous command as observation channels: what the env appends, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from envs.config import ConfigError, EnvConfig, ObservationConfig
from envs.wrappers import make_env
from eval.rollout import camera_rgb

SIZE = 32


def env_cfg(previous_command: bool, frame_stack: int = 2) -> EnvConfig:
    return EnvConfig(observation=ObservationConfig(width=SIZE, height=SIZE,
                                                   frame_stack=frame_stack,
                                                   previous_command=previous_command),
                     max_steps=20)


def test_discrete_env_appends_the_last_command_after_the_same_frames() -> None:
    with_cmd, plain = make_env(env_cfg(True)), make_env(env_cfg(False))
    try:
        assert with_cmd.observation_space.shape == (SIZE, SIZE, 8)
        obs, _ = with_cmd.reset(seed=4)
        ref, _ = plain.reset(seed=4)
        np.testing.assert_array_equal(obs[..., :6], ref)
        assert (obs[..., 6:] == 128).all()  # an episode starts from standing still
        # (linear, angular) fractions -> levels: turn left (0, 1) -> (128, 255);
        # forward-right (0.6, -0.6) -> (204, 51); forward (1, 0) -> (255, 128)
        for action, levels in ((3, (128, 255)), (2, (204, 51)), (0, (255, 128))):
            obs = with_cmd.step(action)[0]
            ref = plain.step(action)[0]
            np.testing.assert_array_equal(obs[..., :6], ref)
            assert (obs[..., 6] == levels[0]).all() and (obs[..., 7] == levels[1]).all()
        assert with_cmd.observation_space.contains(obs)
        np.testing.assert_array_equal(camera_rgb(obs, env_cfg(True).observation), ref[..., 3:])
    finally:
        with_cmd.close()
        plain.close()


def test_continuous_env_appends_the_clipped_command() -> None:
    env = make_env(env_cfg(True, frame_stack=1), continuous=True)
    try:
        env.reset(seed=1)
        obs = env.step(np.array([-1.0, 0.5], np.float32))[0]
        assert obs.shape == (SIZE, SIZE, 5)
        assert (obs[..., 3] == 0).all() and (obs[..., 4] == 191).all()
        obs = env.step(np.array([2.0, -3.0], np.float32))[0]  # outside [-1, 1]: clipped
        assert (obs[..., 3] == 255).all() and (obs[..., 4] == 0).all()
    finally:
        env.close()


def test_previous_command_needs_an_image_only_observation() -> None:
    with pytest.raises(ConfigError, match=r"^env\.observation\.previous_command: .*image-only"):
        EnvConfig(observation=ObservationConfig(previous_command=True, lidar=True))
