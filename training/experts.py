"""Teachers for distillation, and the wrapper that labels every visited state with one.

The label is computed inside the env's own (worker) process from privileged state, so
labelling runs in parallel with rendering and never crosses a process boundary as a grid.
"""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import rundir
from envs.config import ConfigError, ObservationConfig
from eval.agreement import TeacherSpec
from policies.oracle import Oracle
from training.config import config_from_dict, load_config, read_yaml


def teacher_observation(obs: ObservationConfig) -> ObservationConfig:
    """The privileged, render-free observation a PPO teacher trains on: lidar + goal state."""
    return ObservationConfig(width=obs.width, height=obs.height, camera=False, lidar=True,
                             privileged=True, lidar_rays=obs.lidar_rays,
                             lidar_range_m=obs.lidar_range_m)


def teacher_state(env) -> np.ndarray:
    """Same vector as a CameraNavEnv built with `teacher_observation` would observe."""
    base = env.unwrapped
    rng = base.cfg.observation.lidar_range_m
    return np.concatenate([base.lidar() / rng, base.privileged_state()]).astype(np.float32)


class MLPTeacher:
    """A PPO teacher's actor (state -> deterministic action), runnable in any process."""

    def __init__(self, state_dict: dict[str, torch.Tensor], layers: list[nn.Module],
                 continuous: bool):
        self.net = nn.Sequential(*layers)
        self.net.load_state_dict(state_dict)
        self.net.eval()
        torch.set_num_threads(1)  # runs in each env worker, beside the renderer
        self.continuous = continuous

    def __call__(self, state: np.ndarray):
        with torch.no_grad():
            out = self.net(torch.as_tensor(state[None]))[0].numpy()
        return np.clip(out, -1, 1).astype(np.float32) if self.continuous else int(out.argmax())


class ExpertLabel(gym.Wrapper):
    """Adds `info["expert_action"]`: the teacher's action for the observation just returned."""

    def __init__(self, env: gym.Env, teacher: str, mlp: MLPTeacher | None = None,
                 clearance_m: float = 0.0, search: str = "left"):
        super().__init__(env)
        self.teacher = teacher
        self.mlp = mlp
        self.oracle = Oracle(continuous=env.unwrapped.continuous, camera_aware=True,
                             clearance_m=clearance_m, search=search)

    def _label(self, info: dict):
        if self.teacher == "oracle":
            # the ray test costs a few rays per step, paid only by the teacher that reads it
            visible = self.env.unwrapped.goal_in_view() if self.oracle.reads_visibility \
                else None
            return self.oracle.act(info, visible)
        return self.mlp(teacher_state(self.env))

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.oracle.reset(info)
        info["expert_action"] = self._label(info)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["expert_action"] = self._label(info)
        return obs, reward, terminated, truncated, info


RUN_DEPTH = 3
"""How far above a checkpoint its run's config.yaml may sit (`<run>/checkpoints/best/policy.pt`)."""


def distillation_teacher(target: str | os.PathLike[str], preset: str = "default") -> TeacherSpec:
    """The camera-aware planner a checkpoint (or run directory) was distilled from: the
    `distill` settings of its run's config.yaml, in the first folder at or up to `RUN_DEPTH`
    folders above `target` that holds a run's config.yaml and run.json. A checkpoint outside
    any run (e.g. `policies/reference/policy.pt`) is taken to come from `preset`. A config.yaml
    that does not parse is skipped, not an error: the comparison is a diagnostic, and the
    evaluation it rides on must still run."""
    here = Path(target).resolve()
    for folder in [here, *here.parents][:RUN_DEPTH + 1]:
        path = folder / rundir.CONFIG_FILE
        if path.is_file() and (folder / rundir.RUN_FILE).is_file():
            try:
                d = config_from_dict(read_yaml(path)).distill
            except (ConfigError, OSError, ValueError, TypeError):
                continue
            return TeacherSpec(d.teacher_clearance_m, d.teacher_search, str(path))
    d = load_config(preset).distill
    return TeacherSpec(d.teacher_clearance_m, d.teacher_search, f"preset {preset}")
