"""A PPO teacher on privileged state (lidar + goal and planner waypoint), without rendering.

With the camera off the env skips TinyRenderer entirely, so the teacher trains several times
faster than any pixel policy. Its actor is then packed as an `MLPTeacher` that each student
env worker runs to label the student's own visits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

import rundir
from training.config import TrainConfig
from training.experts import MLPTeacher, teacher_observation
from training.ppo import learn, make_ppo
from training.vec import make_vec_env, running

TEACHER_NET = (64, 64)


def teacher_layers(state_size: int, n_out: int) -> list[nn.Module]:
    """The actor as a plain Sequential: policy MLP (tanh, as SB3's MlpPolicy) + action head."""
    layers: list[nn.Module] = []
    size = state_size
    for width in TEACHER_NET:
        layers += [nn.Linear(size, width), nn.Tanh()]
        size = width
    layers.append(nn.Linear(size, n_out))
    return layers


def train_teacher(cfg: TrainConfig, hooks, device: str, run_dir: Path) -> MLPTeacher:
    """PPO on the render-free privileged observation; returns the actor for labelling."""
    env_cfg = dataclasses.replace(cfg.env, observation=teacher_observation(cfg.env.observation))
    venv = make_vec_env(env_cfg, cfg.n_envs, cfg.seed + rundir.SEED_OFFSETS["teacher_envs"],
                        hooks.continuous, kind=cfg.vec_env)
    with running(venv):
        kwargs = {"net_arch": {"pi": list(TEACHER_NET), "vf": list(TEACHER_NET)},
                  "activation_fn": nn.Tanh}
        model = make_ppo(cfg, venv, device, str(run_dir / rundir.TB_DIR), "MlpPolicy", kwargs)
        learn(model, cfg, hooks.for_teacher(cfg.distill.teacher_timesteps),
              cfg.distill.teacher_timesteps)
        policy = model.policy.to("cpu")
        state_size = venv.observation_space.shape[0]
        n_out = venv.action_space.shape[0] if hooks.continuous else venv.action_space.n
    layers = teacher_layers(state_size, n_out)
    net = nn.Sequential(*layers)
    trunk = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    heads = [*trunk, policy.action_net]
    for dst, src in zip([m for m in net if isinstance(m, nn.Linear)], heads):
        dst.load_state_dict(src.state_dict())
    state_dict = {k: v.clone() for k, v in net.state_dict().items()}
    if model.num_timesteps >= cfg.distill.teacher_timesteps:
        # only a fully trained teacher is kept for reuse by a resumed run
        payload = {"state_dict": state_dict, "state_size": state_size, "n_out": n_out}
        rundir.atomic_write(teacher_path(run_dir), lambda tmp: torch.save(payload, tmp))
    return MLPTeacher(state_dict, teacher_layers(state_size, n_out), hooks.continuous)


def teacher_path(run_dir: Path) -> Path:
    """Where a run keeps its fully trained PPO teacher."""
    return run_dir / rundir.TEACHER_DIR / rundir.TEACHER_FILE
