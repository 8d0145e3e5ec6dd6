"""PPO fine-tuning of the student: the critic warms up before the actor moves, the imitation
steps see each observation with its own teacher label, and a run with a fine-tune stage ends
with a checkpoint past the distillation's steps."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import embodied_cli
from training.config import load_config
from training.finetune import (
    CriticWarmup,
    TeacherCloning,
    actor_parameters,
    feature_parameters,
    value_parameters,
)
from training.ppo import make_ppo
from training.vec import make_vec_env, running


def _snapshot(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


class NewestFrameLabel(gym.Wrapper):
    """A stand-in teacher whose label is a function of the newest frame it returns, so that a
    label's pairing with its observation can be checked from the stored observation alone."""

    @staticmethod
    def label(frame: np.ndarray) -> int:
        return int(frame.astype(np.int64).sum()) % 5

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        info["expert_action"] = self.label(obs)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["expert_action"] = self.label(obs)
        return obs, reward, terminated, truncated, info


def test_critic_warms_up_then_actor_learns_and_labels_pair_with_their_observations():
    cfg = load_config("tiny")
    venv = make_vec_env(cfg.env, 2, 0, kind="dummy", wrapper=NewestFrameLabel)
    with running(venv):
        model = make_ppo(cfg, venv, "cpu", None)
        model.lr_schedule = lambda _: 1e-3  # the preset's decays to 0 within one short call
        policy = model.policy
        warmup = CriticWarmup(rollouts=1)
        cloning = TeacherCloning(0, 16, False, 0, warmup)  # 0 steps: collect labels only
        actor0, critic0 = _snapshot(actor_parameters(policy)), _snapshot(value_parameters(policy))
        model.learn(cfg.ppo.n_steps * 2, callback=[warmup, cloning])
        # the first update trained the value head alone
        assert warmup.done == 1
        assert _same(actor0, actor_parameters(policy))
        assert not _same(critic0, value_parameters(policy))
        # every stored observation carries the label its env returned with it
        # (PPO's update flattened the buffer env by env: (envs * steps, C, H, W), frames stacked)
        obs = model.rollout_buffer.observations
        per_frame = cfg.env.observation.image_channels
        expected = [NewestFrameLabel.label(o[-per_frame:].astype(np.uint8)) for o in obs]
        stored = np.stack(cloning.labels).swapaxes(0, 1).reshape(-1)
        assert len(stored) == len(obs) and np.array_equal(stored, expected)
        # the next update moves the actor too, and training leaves every parameter trainable
        actor1 = _snapshot(actor_parameters(policy))
        model.learn(cfg.ppo.n_steps * 2, callback=[warmup, cloning], reset_num_timesteps=False)
        assert warmup.done == 2 and not _same(actor1, actor_parameters(policy))
        assert all(p.requires_grad for p in policy.parameters())


def test_without_train_features_the_cnn_stays_as_distilled_while_the_heads_learn():
    cfg = load_config("tiny")
    venv = make_vec_env(cfg.env, 2, 0, kind="dummy")
    with running(venv):
        model = make_ppo(cfg, venv, "cpu", None)
        model.lr_schedule = lambda _: 1e-3
        policy = model.policy
        cnn = {id(p) for p in feature_parameters(policy)}
        heads = [p for p in actor_parameters(policy) if id(p) not in cnn]
        cnn0, heads0 = _snapshot(feature_parameters(policy)), _snapshot(heads)
        model.learn(cfg.ppo.n_steps * 4, callback=[CriticWarmup(1, train_features=False)])
        assert _same(cnn0, feature_parameters(policy))
        assert not _same(heads0, heads)
        assert all(p.requires_grad for p in policy.parameters())


def test_a_run_with_a_fine_tune_stage_checkpoints_past_distillation(tmp_path: Path):
    run_dir = tmp_path / "ft"
    assert embodied_cli.main(["train", "--config", "tiny", "--run-dir", str(run_dir), "--quiet",
                              "finetune.timesteps=128", "finetune.critic_warmup_rollouts=1",
                              "finetune.teacher_steps=2", "finetune.teacher_batch_size=8"]) == 0
    summary = __import__("json").loads((run_dir / "train_summary.json").read_text())
    distill_steps = load_config("tiny").distill.total_timesteps
    assert summary["timesteps"] >= distill_steps + 128
    assert (run_dir / "final" / "policy.pt").is_file()
