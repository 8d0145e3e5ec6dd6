"""Vectorised training envs: layout, seeding and wrappers in one place."""

from __future__ import annotations

import signal
from collections.abc import Callable

import gymnasium as gym
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from envs.config import EnvConfig
from envs.nav_env import CameraNavEnv
from envs.wrappers import ChannelFrameStack

Wrapper = Callable[[gym.Env], gym.Env]


def _env_fn(env_cfg: EnvConfig, continuous: bool, frame_stack: int, monitor_path: str | None,
            wrapper: Wrapper | None, in_worker: bool) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        if in_worker:
            # Ctrl-C reaches the whole process group: the main process stops cleanly and
            # closes the workers, which must not die first and break the pipes under it.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The pybullet client is created here, inside the worker process.
        env: gym.Env = CameraNavEnv(env_cfg, continuous=continuous)
        if monitor_path is not None:
            # append, so a resumed run keeps the episodes logged before the interruption
            env = Monitor(env, monitor_path, info_keywords=("success", "collisions"),
                          override_existing=False)
        if wrapper is not None:
            env = wrapper(env)
        if frame_stack > 1:
            env = ChannelFrameStack(env, frame_stack)
        return env
    return make


def make_vec_env(env_cfg: EnvConfig, n_envs: int, seed: int, continuous: bool = False,
                 frame_stack: int = 1, kind: str = "subproc", monitor_dir: str | None = None,
                 wrapper: Wrapper | None = None) -> VecEnv:
    """`n_envs` envs seeded `seed + i`; subproc runs each in its own process.

    Monitor logs (one CSV per env) go to `monitor_dir` when given.
    """
    fns = [_env_fn(env_cfg, continuous, frame_stack,
                   None if monitor_dir is None else f"{monitor_dir}/env{i}", wrapper,
                   kind == "subproc")
           for i in range(n_envs)]
    venv = SubprocVecEnv(fns, start_method="forkserver") if kind == "subproc" else DummyVecEnv(fns)
    venv.seed(seed)
    return venv
