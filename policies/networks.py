"""The camera policy network: a small CNN feature extractor for stable-baselines3 policies.

Images stay uint8 in [0, 255] until the network: SB3 scales them by 1/255 before the
extractor. Input is channel-first (C, H, W), as SB3's VecTransposeImage delivers it.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class CameraCNN(BaseFeaturesExtractor):
    """Three conv layers (Nature-CNN shape, narrower by default) and one linear layer.

    :param observation_space: Box of shape (C, H, W), uint8.
    :param features_dim: size of the output feature vector.
    :param channels: output channels of the three conv layers.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 256,
                 channels: tuple[int, int, int] = (32, 64, 64)):
        super().__init__(observation_space, features_dim)
        c_in = observation_space.shape[0]
        c1, c2, c3 = channels
        self.cnn = nn.Sequential(
            nn.Conv2d(c_in, c1, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(observations))
