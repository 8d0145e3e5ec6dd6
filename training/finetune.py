"""PPO fine-tuning of a distilled camera student through stable-baselines3.

Distillation copies the teacher; the task reward can then teach what copying cannot (commit to
a direction, leave a contact). Two failure modes of naive fine-tuning are kept out by
callbacks, not by a forked PPO loop:

- `CriticWarmup`: a fresh value head gives meaningless advantages, and PPO's first updates
  would push the actor by noise. For the first rollouts only the value head learns (the
  actor's parameters, the shared CNN included, do not take gradients).
- `TeacherCloning`: after each later rollout, a few imitation steps toward the teacher's labels
  of the states just visited (the DAgger loss, `training.distill.imitation_loss`), so the
  student does not forget while the reward reshapes it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from torch import nn

import rundir
from training import ppo as ppo_mod
from training.config import TrainConfig
from training.distill import imitation_loss
from training.experts import ExpertLabel, MLPTeacher, current_infos, teacher_spec
from training.vec import make_vec_env, running


def value_parameters(policy) -> list[nn.Parameter]:
    """The critic's own parameters: its MLP branch and head (and its CNN when not shared)."""
    modules = [policy.mlp_extractor.value_net, policy.value_net]
    if not policy.share_features_extractor:
        modules.append(policy.vf_features_extractor)
    return [p for m in modules for p in m.parameters()]


def actor_parameters(policy) -> list[nn.Parameter]:
    """Every parameter the critic does not own (shared CNN, actor branch, action head)."""
    critic = {id(p) for p in value_parameters(policy)}
    return [p for p in policy.parameters() if id(p) not in critic]


def feature_parameters(policy) -> list[nn.Parameter]:
    """The CNN the actor reads (shared with the critic unless `share_features_extractor` is
    off)."""
    return list(policy.pi_features_extractor.parameters())


class CriticWarmup(BaseCallback):
    """Freeze the actor for the first `rollouts` PPO updates: only the value head learns.
    Without `train_features` the actor's CNN stays frozen after the warm-up too."""

    def __init__(self, rollouts: int, train_features: bool = True):
        super().__init__()
        self.rollouts = rollouts
        self.train_features = train_features
        self.done = 0
        self.frozen = rollouts > 0
        """Whether the actor sits out the update of the rollout that just ended."""

    def _on_rollout_end(self) -> None:
        # runs just before PPO's update of this rollout
        self.frozen = self.done < self.rollouts
        policy = self.model.policy
        features = {id(p) for p in feature_parameters(policy)}
        for param in actor_parameters(policy):
            fixed = self.frozen or (not self.train_features and id(param) in features)
            param.requires_grad_(not fixed)
        self.done += 1
        self.logger.record("finetune/actor_frozen", float(self.frozen))

    def _on_training_end(self) -> None:
        for param in self.model.policy.parameters():
            param.requires_grad_(True)

    def _on_step(self) -> bool:
        return True


class TeacherCloning(BaseCallback):
    """After each rollout (once `warmup` says the critic is warm), `steps` minibatch imitation
    steps toward the teacher's labels of the rollout's own observations.

    The label of the observation stored at a step is the one the env returned with that
    observation (`info["expert_action"]` from `ExpertLabel`; after an automatic reset, the
    reset's info)."""

    def __init__(self, steps: int, batch_size: int, continuous: bool, seed: int,
                 warmup: CriticWarmup | None = None):
        super().__init__()
        self.steps, self.batch_size, self.continuous = steps, batch_size, continuous
        self.warmup = warmup
        self.rng = np.random.default_rng(seed)
        self.labels: list[np.ndarray] = []
        self.current: np.ndarray | None = None

    def _labels_after(self, infos, dones) -> np.ndarray:
        # SB3's image-transposing wrapper keeps reset infos of its own: read the workers'
        resets = self.training_env.unwrapped.reset_infos
        return np.array([info["expert_action"] for info in current_infos(infos, dones, resets)])

    def _on_training_start(self) -> None:
        n = self.training_env.num_envs
        self.current = self._labels_after([{}] * n, [True] * n)

    def _on_rollout_start(self) -> None:
        self.labels = []

    def _on_step(self) -> bool:
        self.labels.append(self.current)
        self.current = self._labels_after(self.locals["infos"], self.locals["dones"])
        return True

    def _on_rollout_end(self) -> None:
        if self.steps == 0 or (self.warmup is not None and self.warmup.frozen):
            return
        buffer, policy = self.model.rollout_buffer, self.model.policy
        obs = buffer.observations.reshape(-1, *buffer.obs_shape)
        labels = np.stack(self.labels).reshape(len(obs), *np.shape(self.labels[0])[1:])
        policy.set_training_mode(True)
        agreements = []
        for _ in range(self.steps):
            pick = self.rng.integers(0, len(obs), min(self.batch_size, len(obs)))
            images = torch.as_tensor(obs[pick], device=policy.device)
            target = torch.as_tensor(labels[pick], device=policy.device)
            loss, agreement = imitation_loss(policy, images, target, self.continuous)
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), self.model.max_grad_norm)
            policy.optimizer.step()
            agreements.append(agreement)
        key = "finetune/teacher_action_mae" if self.continuous else "finetune/teacher_agreement"
        self.logger.record(key, float(np.mean(agreements)))


def finetune(cfg: TrainConfig, hooks, device: torch.device, run_dir, student,
             start_timesteps: int, teacher: MLPTeacher | None = None):
    """PPO on the task reward from `student`'s weights for `cfg.finetune.timesteps` steps
    (or until the hooks stop it); returns the fine-tuned policy and the step count.

    Its steps continue the distillation's count, so evaluation, checkpoints and the progress
    bar carry on where distillation stopped."""
    f = cfg.finetune
    kind, spec = cfg.distill.teacher, teacher_spec(cfg.distill)

    def wrapper(env):
        return ExpertLabel(env, kind, teacher, spec)

    venv = make_vec_env(cfg.env, cfg.n_envs, cfg.seed + rundir.SEED_OFFSETS["finetune_envs"],
                        hooks.continuous, kind=cfg.vec_env, monitor_dir=hooks.monitor_dir,
                        wrapper=wrapper if f.teacher_steps > 0 else None)
    with running(venv):
        ft_cfg = dataclasses.replace(cfg, ppo=dataclasses.replace(
            cfg.ppo, learning_rate=f.learning_rate, ent_coef=f.ent_coef))
        model = ppo_mod.make_ppo(ft_cfg, venv, str(device), str(run_dir / rundir.TB_DIR))
        model.policy.load_state_dict(student.state_dict())
        model.num_timesteps = start_timesteps
        warmup = CriticWarmup(f.critic_warmup_rollouts, f.train_features)
        extra = [warmup]
        if f.teacher_steps > 0:
            extra.append(TeacherCloning(f.teacher_steps, f.teacher_batch_size, hooks.continuous,
                                        cfg.seed, warmup))
        hooks.total_timesteps = start_timesteps + f.timesteps
        ppo_mod.learn(model, ft_cfg, hooks, hooks.total_timesteps, extra_callbacks=extra)
        return model.policy, model.num_timesteps
