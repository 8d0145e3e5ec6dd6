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
from training.config import DistillConfig, load_config, load_run_config


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


GOAL_SCALE_M = 5.0
"""Goal distances in the auxiliary target are divided by this (about the arena's diagonal)."""


def auxiliary_size(obs: ObservationConfig) -> int:
    """Length of `auxiliary_target` for an env observing `obs`."""
    return obs.lidar_rays + 5


def auxiliary_target(env) -> np.ndarray:
    """What a student's auxiliary head learns to read from the camera (`distill.aux_weight`),
    taken from the PPO teacher's state (`teacher_state`): the lidar's ranges around the robot
    as fractions of its range, then the goal's distance (over `GOAL_SCALE_M`, at most 1) and
    bearing (cos, sin), and the bearing of the plan's next waypoint (cos, sin); every entry in
    [-1, 1], so no part outweighs the rest."""
    state = teacher_state(env)
    rays = env.unwrapped.cfg.observation.lidar_rays
    goal_m, goal_cos, goal_sin, _, waypoint_cos, waypoint_sin, _ = state[rays:]
    goal = [min(goal_m / GOAL_SCALE_M, 1.0), goal_cos, goal_sin, waypoint_cos, waypoint_sin]
    return np.concatenate([state[:rays], goal]).astype(np.float32)


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


def current_infos(infos: list[dict], dones, reset_infos: list[dict]) -> list[dict]:
    """The info each env's current observation came with, from a vec env's step: after an
    automatic reset, the reset's info (where `ExpertLabel` put the new episode's label)."""
    return [reset_infos[i] if dones[i] else infos[i] for i in range(len(infos))]


class ExpertLabel(gym.Wrapper):
    """Adds `info["expert_action"]`: the teacher's action for the observation just returned,
    and with `auxiliary` on, `info["aux_target"]` (`auxiliary_target`) for the same state."""

    def __init__(self, env: gym.Env, teacher: str, mlp: MLPTeacher | None = None,
                 spec: TeacherSpec | None = None, auxiliary: bool = False):
        super().__init__(env)
        self.teacher = teacher
        self.mlp = mlp
        self.oracle = (spec or TeacherSpec()).build(env.unwrapped.continuous)
        self.auxiliary = auxiliary

    def _label(self, info: dict):
        if self.teacher == "oracle":
            # the ray test costs a few rays per step, paid only by the teacher that reads it
            visible = self.env.unwrapped.goal_in_view() if self.oracle.reads_visibility \
                else None
            return self.oracle.act(info, visible)
        return self.mlp(teacher_state(self.env))

    def _annotate(self, info: dict) -> dict:
        info["expert_action"] = self._label(info)
        if self.auxiliary:
            info["aux_target"] = auxiliary_target(self.env)
        return info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.oracle.reset(info)
        return obs, self._annotate(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._annotate(info)


def distillation_teacher(target: str | os.PathLike[str], preset: str = "default"
                         ) -> TeacherSpec | None:
    """The camera-aware planner a checkpoint (or run directory) was distilled from: the
    `distill` settings of its run's config.yaml (`rundir.run_dir_of`). A checkpoint outside any
    run (e.g. `policies/reference/policy.pt`) is taken to come from `preset`. None for a run
    that was not distilled from the planner (pixel PPO, or a PPO teacher): there is no
    planner's label to compare with, nor for a run whose config.yaml no longer loads."""
    run = rundir.run_dir_of(target)
    if run is not None and (Path(run) / rundir.CONFIG_FILE).is_file():
        try:
            cfg, source = load_run_config(Path(run)), str(Path(run) / rundir.CONFIG_FILE)
        except ConfigError:  # the comparison is a diagnostic: the evaluation still runs
            return None
    else:
        cfg, source = load_config(preset), f"preset {preset}"
    if cfg.method != "distill" or cfg.distill.teacher != "oracle":
        return None
    return teacher_spec(cfg.distill, source)


def teacher_spec(d: DistillConfig, source: str = "") -> TeacherSpec:
    """The oracle teacher's settings in a run's `distill` section."""
    return TeacherSpec(d.teacher_clearance_m, d.teacher_search, source,
                       d.teacher_keep_goal_in_view)
