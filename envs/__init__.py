"""Camera-only navigation environments. Importing this package registers:

- `embodied/CameraNav-v0`: discrete actions (forward, forward-left/right, turn left/right)
- `embodied/CameraNavContinuous-v0`: continuous (linear, angular) velocity actions
"""

from gymnasium.envs.registration import register, registry

from envs.quiet import quiet_stdout

with quiet_stdout():  # pybullet prints its build time on first import
    import pybullet  # noqa: F401

from envs.config import ConfigError, EnvConfig, ObservationConfig, RandomizationConfig
from envs.nav_env import ACTION_NAMES, DISCRETE_ACTIONS, CameraNavEnv

ENV_IDS = ("embodied/CameraNav-v0", "embodied/CameraNavContinuous-v0")

if ENV_IDS[0] not in registry:
    register(id=ENV_IDS[0], entry_point="envs.nav_env:CameraNavEnv",
             kwargs={"continuous": False})
if ENV_IDS[1] not in registry:
    register(id=ENV_IDS[1], entry_point="envs.nav_env:CameraNavEnv",
             kwargs={"continuous": True})

__all__ = ["ACTION_NAMES", "DISCRETE_ACTIONS", "ENV_IDS", "CameraNavEnv", "ConfigError",
           "EnvConfig", "ObservationConfig", "RandomizationConfig"]
