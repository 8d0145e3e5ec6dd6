"""Pixel PPO through stable-baselines3, with behaviour added by one callback.

The callback sets torch threads per phase (1 while the env workers render, `torch_threads_train`
during updates: OpenMP spin-waiting on a busy core collapses throughput), drives the progress
bar, logs episode success, runs the periodic held-out evaluation, writes resumable checkpoints
and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

from typing import Any

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from policies.checkpoint import policy_kwargs
from training.config import TrainConfig


def linear_schedule(initial: float):
    """Learning rate decaying linearly to 0 over the run (a function of progress remaining)."""
    def schedule(progress_remaining: float) -> float:
        return initial * progress_remaining
    return schedule


class ThreadPhases(BaseCallback):
    """Torch threads per phase: few while envs render, more during gradient updates."""

    def __init__(self, collect_threads: int, train_threads: int):
        super().__init__()
        self.collect_threads, self.train_threads = collect_threads, train_threads

    def _on_rollout_start(self) -> None:
        torch.set_num_threads(self.collect_threads)

    def _on_rollout_end(self) -> None:
        torch.set_num_threads(self.train_threads)

    def _on_step(self) -> bool:
        return True


class HooksCallback(ThreadPhases):
    """Connects an SB3 learner to the run's TrainingHooks."""

    def __init__(self, cfg: TrainConfig, hooks, successes: list[float]):
        super().__init__(cfg.torch_threads_collect, cfg.torch_threads_train)
        self.cfg, self.hooks, self.successes = cfg, hooks, successes

    def _on_rollout_end(self) -> None:
        super()._on_rollout_end()
        t = self.num_timesteps
        if self.hooks.eval_due(t):
            self.hooks.evaluate(self.model.policy, t)
        if self.hooks.checkpoint_due(t):
            self.hooks.save_trainer(self.model.policy, trainer_state(self.model), t)

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"]):
            if done:
                self.successes.append(float(info.get("success", False)))
        self.hooks.progress(self.num_timesteps, self.successes)
        return not self.hooks.should_stop()


def trainer_state(model: PPO) -> dict[str, Any]:
    """Optimizer state and counters (tensors and plain values only: loads weights-only)."""
    return {"optimizer": model.policy.optimizer.state_dict(),
            "n_updates": model._n_updates, "kind": "ppo"}


def make_ppo(cfg: TrainConfig, venv: VecEnv, device: str, tb_dir: str | None,
             policy: str = "CnnPolicy", kwargs: dict | None = None) -> PPO:
    p = cfg.ppo
    return PPO(policy, venv, learning_rate=linear_schedule(p.learning_rate), n_steps=p.n_steps,
               batch_size=p.batch_size, n_epochs=p.n_epochs, gamma=p.gamma,
               gae_lambda=p.gae_lambda, clip_range=p.clip_range, ent_coef=p.ent_coef,
               vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm,
               policy_kwargs=kwargs if kwargs is not None else policy_kwargs(
                   cfg.arch.features_dim, tuple(cfg.arch.channels), tuple(cfg.arch.net_arch)),
               tensorboard_log=tb_dir, seed=cfg.seed, device=device, verbose=0)


def learn(model: PPO, cfg: TrainConfig, hooks, total_timesteps: int,
          successes: list[float] | None = None,
          extra_callbacks: list[BaseCallback] | None = None) -> PPO:
    """Train until `total_timesteps` (continuing from `model.num_timesteps`); `extra_callbacks`
    run after the hooks' callback at every event."""
    successes = successes if successes is not None else []
    remaining = max(0, total_timesteps - model.num_timesteps)
    if remaining > 0:
        model.learn(remaining, callback=[HooksCallback(cfg, hooks, successes),
                                         *(extra_callbacks or [])],
                    reset_num_timesteps=model.num_timesteps == 0, tb_log_name="ppo",
                    progress_bar=False)
    return model


def restore(model: PPO, policy_state: dict, state: dict[str, Any]) -> None:
    """Load weights, optimizer and counters saved by `trainer_state` into a fresh model."""
    model.policy.load_state_dict(policy_state)
    model.policy.optimizer.load_state_dict(state["optimizer"])
    model.num_timesteps = int(state["timesteps"])
    model._n_updates = int(state.get("n_updates", 0))
