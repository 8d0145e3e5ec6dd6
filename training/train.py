"""`embodied train`: one entry point for both methods, with resume and clean Ctrl-C."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from envs.config import ConfigError
from policies.checkpoint import CHECKPOINT_NAME
from training import distill as distill_mod
from training import ppo as ppo_mod
from training.config import TrainConfig, from_dict
from training.experts import MLPTeacher
from training.run import (
    TrainingHooks,
    latest_trainer_state,
    write_json,
    write_run_files,
)
from training.teacher import teacher_layers, train_teacher
from training.vec import make_vec_env


@dataclass
class TrainResult:
    run_dir: Path
    timesteps: int
    interrupted: bool
    wall_clock_s: float
    final_checkpoint: Path
    best_checkpoint: Path | None
    summary: dict[str, Any]


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA device; "
                          "use --device cpu or auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return from_dict(TrainConfig, data)


def train(cfg: TrainConfig, run_dir: Path, argv: list[str] | None = None, resume: bool = False,
          quiet: bool = False) -> TrainResult:
    """Train a camera policy into `run_dir` (see training/run.py for what it holds)."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    resume_state: dict[str, Any] | None = None
    resume_folder: Path | None = None
    if resume:
        resume_folder, resume_state = latest_trainer_state(run_dir)
    write_run_files(run_dir, cfg, argv or [], str(device))
    total = cfg.distill.total_timesteps if cfg.method == "distill" else cfg.ppo.total_timesteps
    continuous = False
    hooks = TrainingHooks(cfg, run_dir, total, continuous, device, quiet=quiet)
    start = int(resume_state["timesteps"]) if resume_state else 0
    if resume_state:
        hooks.best_success = float(resume_state.get("best_success", -1.0))
        hooks.best_spl = float(resume_state.get("best_spl", -1.0))
        hooks.wall_offset_s = float(resume_state.get("wall_clock_s", 0.0))
        hooks.time_to_success_s = resume_state.get("time_to_success_s")
    hooks.open(start)
    try:
        if cfg.method == "ppo":
            policy, timesteps = _train_ppo(cfg, hooks, device, run_dir, resume_state,
                                           resume_folder)
        else:
            policy, timesteps = _train_distill(cfg, hooks, device, run_dir, resume_state,
                                               resume_folder)
        interrupted = hooks.stop.requested
        if not interrupted and hooks.last_eval_at != timesteps:
            hooks.evaluate(policy, timesteps)
        final = hooks.save_policy(policy, "final", timesteps)
    finally:
        hooks.close()
    best = run_dir / "best" / CHECKPOINT_NAME
    summary = {
        "method": cfg.method, "timesteps": timesteps, "interrupted": interrupted,
        "stopped_by_time_budget": hooks.budget_spent() and not interrupted,
        "wall_clock_s": round(hooks.elapsed_s(), 1),
        "steps_per_s": round(timesteps / max(hooks.elapsed_s(), 1e-9), 1),
        "best_heldout_success": hooks.best_success if hooks.best_success >= 0 else None,
        "best_heldout_spl": hooks.best_spl if hooks.best_spl >= 0 else None,
        "time_to_90pct_heldout_s": hooks.time_to_success_s,
        "device": str(device), "n_envs": cfg.n_envs,
    }
    write_json(run_dir / "train_summary.json", summary)
    return TrainResult(run_dir, timesteps, interrupted, hooks.elapsed_s(), final,
                       best if best.is_file() else None, summary)


def _policy_state(folder: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(folder / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    return payload["state_dict"]


def _train_ppo(cfg, hooks, device, run_dir, resume_state, resume_folder):
    # a resumed run must not replay the episodes it started with: offset the env seeds
    seed = cfg.seed + (1_000 * (1 + int(resume_state.get("n_updates", 0))) if resume_state
                       else 0)
    venv = make_vec_env(cfg.env, cfg.n_envs, seed, hooks.continuous, cfg.frame_stack,
                        cfg.vec_env, hooks.monitor_dir)
    try:
        model = ppo_mod.make_ppo(cfg, venv, str(device), str(run_dir / "tb"))
        if resume_state:
            ppo_mod.restore(model, _policy_state(resume_folder), resume_state)
        ppo_mod.learn(model, cfg, hooks, cfg.ppo.total_timesteps)
        timesteps = model.num_timesteps
        if hooks.should_stop() or timesteps < cfg.ppo.total_timesteps:
            hooks.save_trainer(model.policy, ppo_mod.trainer_state(model), timesteps)
        return model.policy, timesteps
    finally:
        venv.close()


def _load_teacher(run_dir: Path) -> MLPTeacher | None:
    path = run_dir / "teacher" / "teacher.pt"
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    return MLPTeacher(data["state_dict"], teacher_layers(int(data["state_size"]),
                                                         int(data["n_out"]), False), False)


class _DistillHooks:
    """Adapts TrainingHooks to the DAgger loop (progress, eval, checkpoints per iteration)."""

    def __init__(self, hooks: TrainingHooks):
        self.h = hooks
        self.continuous = hooks.continuous
        self.monitor_dir = hooks.monitor_dir

    def should_stop(self) -> bool:
        return self.h.should_stop()

    def progress(self, timesteps: int) -> float:
        """Fraction of the run done, by steps or by the time budget, whichever is further."""
        done = timesteps / self.h.cfg.distill.total_timesteps
        budget = self.h.cfg.time_budget_s
        if budget > 0:
            done = max(done, self.h.elapsed_s() / budget)
        return min(1.0, done)

    def on_iteration(self, student, optimizer, state, stats: dict[str, float]) -> None:
        t = state.timesteps
        self.h.log_scalars(t, stats)
        if state.successes:
            self.h.log_scalars(t, {"rollout/success_rate": float(np.mean(state.successes[-100:]))})
        self.h.progress(t, state.successes)
        if self.h.eval_due(t):
            self.h.evaluate(student, t)
        if self.h.checkpoint_due(t) or self.h.should_stop():
            self.h.save_trainer(student, _distill_trainer_state(optimizer, state), t)


def _distill_trainer_state(optimizer, state) -> dict[str, Any]:
    return {"optimizer": optimizer.state_dict(), "iteration": state.iteration,
            "episodes": state.episodes, "kind": "distill"}


def _train_distill(cfg, hooks, device, run_dir, resume_state, resume_folder):
    teacher = None
    if cfg.distill.teacher == "ppo":
        teacher = _load_teacher(run_dir)
        if teacher is None:
            teacher = train_teacher(cfg, hooks, str(device), run_dir)
    student = optimizer_state = state = None
    if resume_state:
        student = _fresh_student(cfg, device)
        student.load_state_dict(_policy_state(resume_folder))
        optimizer_state = resume_state["optimizer"]
        state = distill_mod.DistillState(int(resume_state["timesteps"]),
                                         int(resume_state["iteration"]),
                                         int(resume_state["episodes"]))
    if hooks.should_stop():
        # stopped during the teacher phase: keep a resumable (untrained) student checkpoint
        state = state or distill_mod.DistillState()
        if student is None:
            student = _fresh_student(cfg, device)
        optimizer = torch.optim.Adam(student.parameters(), lr=cfg.distill.learning_rate)
        hooks.save_trainer(student, _distill_trainer_state(optimizer, state), state.timesteps)
        return student, state.timesteps
    student, optimizer, state = distill_mod.distill(
        cfg, _DistillHooks(hooks), device, teacher, student, optimizer_state, state)
    finetune = cfg.distill.finetune_timesteps
    if finetune > 0 and not hooks.should_stop():
        return _finetune(cfg, hooks, device, run_dir, student, state.timesteps)
    return student, state.timesteps


def _fresh_student(cfg, device):
    from gymnasium import spaces

    obs = cfg.env.observation
    channels = obs.image_channels * cfg.frame_stack
    return distill_mod.make_student(cfg, (obs.height, obs.width, channels), spaces.Discrete(5),
                                    device)


def _finetune(cfg, hooks, device, run_dir, student, start_timesteps):
    """Optional PPO fine-tuning of the distilled student on the task reward.

    Its steps continue the distillation's count, so evaluation, checkpoints and the progress
    bar carry on where distillation stopped.
    """
    venv = make_vec_env(cfg.env, cfg.n_envs, cfg.seed + 90_000, hooks.continuous,
                        cfg.frame_stack, cfg.vec_env, hooks.monitor_dir)
    try:
        ft_cfg = dataclasses.replace(cfg, ppo=dataclasses.replace(
            cfg.ppo, learning_rate=cfg.ppo.learning_rate * 0.3))
        model = ppo_mod.make_ppo(ft_cfg, venv, str(device), str(run_dir / "tb"))
        model.policy.load_state_dict(student.state_dict())
        model.num_timesteps = start_timesteps
        hooks.total_timesteps = start_timesteps + cfg.distill.finetune_timesteps
        ppo_mod.learn(model, ft_cfg, hooks, hooks.total_timesteps)
        return model.policy, model.num_timesteps
    finally:
        venv.close()
