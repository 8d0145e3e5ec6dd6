"""Observation wrappers."""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ChannelFrameStack(gym.ObservationWrapper):
    """Stack the last `k` image observations along the channel axis: (H, W, C) -> (H, W, k*C).

    Channel stacking (rather than a new leading axis) keeps the observation an image that
    stable-baselines3's CNN policies accept as is.
    """

    def __init__(self, env: gym.Env, k: int):
        super().__init__(env)
        if k < 1:
            raise ValueError(f"frame stack k must be >= 1, got {k}")
        space = env.observation_space
        if not isinstance(space, spaces.Box) or space.dtype != np.uint8 or len(space.shape) != 3:
            raise ValueError("ChannelFrameStack needs a uint8 (H, W, C) image observation")
        self.k = k
        h, w, c = space.shape
        self.observation_space = spaces.Box(0, 255, (h, w, c * k), np.uint8)
        self._frames: deque[np.ndarray] = deque(maxlen=k)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for _ in range(self.k):
            self._frames.append(obs)
        return self.observation(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(obs)
        return self.observation(obs), reward, terminated, truncated, info

    def observation(self, observation):
        return np.concatenate(list(self._frames), axis=2)
