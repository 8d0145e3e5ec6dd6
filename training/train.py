"""`embodied train`: one entry point for both methods, with resume and Ctrl-C handling.

`train` claims the run directory (one process per run, see `training.claim`), writes
config.yaml and run.json, then trains through `TrainingHooks`. Ctrl-C once: the current
iteration ends, a resumable checkpoint is saved and `train` returns with `interrupted`. Twice:
`StopNow` is raised at once, the env workers are ended and nothing more is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rundir
from envs.config import ConfigError
from policies.checkpoint import CHECKPOINT_NAME
from training import distill as distill_mod
from training import ppo as ppo_mod
from training.claim import claim_run_dir
from training.config import TrainConfig
from training.experts import MLPTeacher
from training.finetune import finetune
from training.resume import ResumeError, ResumePoint, resume_point, unfit
from training.run import StopNow, TrainingHooks, write_run_files
from training.teacher import teacher_layers, teacher_path, train_teacher
from training.vec import make_vec_env, running


@dataclass
class TrainResult:
    """What a finished (or once-interrupted) training run produced."""

    run_dir: Path
    timesteps: int
    interrupted: bool
    wall_clock_s: float
    final_checkpoint: Path
    best_checkpoint: Path | None
    summary: dict[str, Any]


def resolve_device(device: str) -> torch.device:
    """`auto`, `cpu` or `cuda` as a torch device; cuda without a CUDA device is an error."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA device; "
                          "use --device cpu or auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _stopped_now(run_dir: Path) -> str:
    """The message after a second Ctrl-C: what is on disk and how to go on."""
    try:
        latest = rundir.read_json(run_dir / rundir.LATEST_FILE)
        saved = f"the checkpoint at step {int(latest['timesteps']):,} is intact"
    except (rundir.RunFileError, KeyError, TypeError, ValueError):
        return (f"stopped at once by a second Ctrl-C before any checkpoint was saved; "
                f"start again with a new --run-dir (or delete {run_dir})")
    return (f"stopped at once by a second Ctrl-C; env workers ended, nothing written since "
            f"the last checkpoint ({saved}); resume with: embodied train --resume {run_dir}")


def train(cfg: TrainConfig, run_dir: Path, argv: list[str] | None = None, resume: bool = False,
          quiet: bool = False, resume_from: str | None = None,
          on_eval: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train a camera policy into `run_dir` (its layout: see `rundir`).

    `on_eval`, when given, is called with the row of each periodic held-out validation.
    A new run needs `run_dir` absent or empty; `resume` continues it from the checkpoint
    `checkpoints/latest.json` names, or from the `step_<N>` folder `resume_from` names.
    Raises `RunDirInUse` when another process trains into `run_dir`, `ResumeError` for a
    checkpoint that cannot be read, and `StopNow` on a second Ctrl-C.
    """
    if resume_from is not None and not resume:
        raise ConfigError("resume_from picks the checkpoint of a resumed run; pass resume too")
    device = resolve_device(cfg.device)
    run_dir = Path(run_dir)
    with claim_run_dir(run_dir, fresh=not resume):
        point = resume_point(run_dir, cfg.method, resume_from) if resume else None
        torch.manual_seed(cfg.seed)
        write_run_files(run_dir, cfg, argv or [], str(device))
        try:
            return _train(cfg, run_dir, device, point, quiet, on_eval)
        except StopNow:
            raise StopNow(_stopped_now(run_dir)) from None


def _train(cfg: TrainConfig, run_dir: Path, device: torch.device, point: ResumePoint | None,
           quiet: bool, on_eval: Callable[[dict[str, Any]], None] | None = None
           ) -> TrainResult:
    total = cfg.distill.total_timesteps if cfg.method == "distill" else cfg.ppo.total_timesteps
    hooks = TrainingHooks(cfg, run_dir, total, device, quiet=quiet, on_eval=on_eval)
    if point is not None:
        hooks.best_success = float(point.state.get("best_success", -1.0))
        hooks.best_spl = float(point.state.get("best_spl", -1.0))
        hooks.wall_offset_s = float(point.state.get("wall_clock_s", 0.0))
        hooks.time_to_success_s = point.state.get("time_to_success_s")
    hooks.open(point.timesteps if point else 0)
    try:
        if cfg.method == "ppo":
            policy, timesteps = _train_ppo(cfg, hooks, device, run_dir, point)
        else:
            policy, timesteps = _train_distill(cfg, hooks, device, run_dir, point)
        interrupted = hooks.stop.requested
        if not interrupted and hooks.last_eval_at != timesteps:
            hooks.evaluate(policy, timesteps)
        final = hooks.save_policy(policy, rundir.FINAL_DIR, timesteps)
    finally:
        hooks.close()
    best = run_dir / rundir.BEST_DIR / CHECKPOINT_NAME
    summary = {
        "method": cfg.method, "continuous": cfg.continuous, "timesteps": timesteps,
        "interrupted": interrupted,
        "stopped_by_time_budget": hooks.budget_spent() and not interrupted,
        "wall_clock_s": round(hooks.elapsed_s(), 1),
        "steps_per_s": round(timesteps / max(hooks.elapsed_s(), 1e-9), 1),
        "best_heldout_success": hooks.best_success if hooks.best_success >= 0 else None,
        "best_heldout_spl": hooks.best_spl if hooks.best_spl >= 0 else None,
        "time_to_90pct_heldout_s": hooks.time_to_success_s,
        "device": str(device), "n_envs": cfg.n_envs,
    }
    rundir.write_json(run_dir / rundir.TRAIN_SUMMARY_FILE, summary)
    return TrainResult(run_dir, timesteps, interrupted, hooks.elapsed_s(), final,
                       best if best.is_file() else None, summary)


def _train_ppo(cfg, hooks, device, run_dir, point: ResumePoint | None):
    # a resumed run must not replay the episodes it started with: offset the env seeds
    seed = cfg.seed
    if point is not None:
        updates = int(point.state.get("n_updates", 0))
        seed += rundir.SEED_OFFSETS["ppo_resume"] * (1 + updates)
    venv = make_vec_env(cfg.env, cfg.n_envs, seed, hooks.continuous, kind=cfg.vec_env,
                        monitor_dir=hooks.monitor_dir)
    with running(venv):
        model = ppo_mod.make_ppo(cfg, venv, str(device), str(run_dir / rundir.TB_DIR))
        if point is not None:
            try:
                ppo_mod.restore(model, point.policy_state, point.state)
            except (RuntimeError, KeyError, ValueError, TypeError) as err:
                raise unfit(point, run_dir, err) from None
        ppo_mod.learn(model, cfg, hooks, cfg.ppo.total_timesteps)
        timesteps = model.num_timesteps
        if hooks.should_stop() or timesteps < cfg.ppo.total_timesteps:
            hooks.save_trainer(model.policy, ppo_mod.trainer_state(model), timesteps)
        return model.policy, timesteps


def _load_teacher(cfg: TrainConfig, run_dir: Path) -> MLPTeacher | None:
    """The run's trained PPO teacher, if it kept one (a resumed run does not retrain it)."""
    path = teacher_path(run_dir)
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        n_out = int(data["n_out"])
        layers = teacher_layers(int(data["state_size"]), n_out)
        teacher = MLPTeacher(data["state_dict"], layers, cfg.continuous)
    except Exception as err:  # corrupt, foreign or hand-edited: one line, never a traceback
        raise ResumeError(f"{path} is not a readable teacher ({type(err).__name__}); delete it "
                          "and the resumed run trains the teacher again") from None
    expected = distill_mod.student_meta(cfg).n_outputs
    if n_out != expected:
        kind = "continuous" if cfg.continuous else "discrete"
        raise ResumeError(f"{path} has {n_out} action outputs, not the {expected} of this "
                          f"{kind} run; delete it and the resumed run trains the teacher again")
    return teacher


class _DistillHooks:
    """Adapts TrainingHooks to the DAgger loop (progress, eval, checkpoints per iteration)."""

    def __init__(self, hooks: TrainingHooks):
        self.h = hooks
        self.continuous = hooks.continuous
        self.monitor_dir = hooks.monitor_dir

    def _budget_s(self) -> float:
        """Distillation's share of the time budget (all of it without a fine-tune after)."""
        cfg = self.h.cfg
        keep = cfg.finetune.budget_share if cfg.finetune.timesteps > 0 else 0.0
        return cfg.time_budget_s * (1.0 - keep)

    def should_stop(self) -> bool:
        """The run stops, or (before a fine-tune) distillation's share of the budget is spent."""
        budget = self._budget_s()
        return self.h.should_stop() or (budget > 0 and self.h.elapsed_s() >= budget)

    def progress(self, timesteps: int) -> float:
        """Fraction of the distillation done, by steps or by its share of the time budget,
        whichever is further."""
        done = timesteps / self.h.cfg.distill.total_timesteps
        budget = self._budget_s()
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


def _train_distill(cfg, hooks, device, run_dir, point: ResumePoint | None):
    teacher = None
    if cfg.distill.teacher == "ppo":
        teacher = _load_teacher(cfg, run_dir)
        if teacher is None:
            teacher = train_teacher(cfg, hooks, str(device), run_dir)
    student = optimizer_state = state = None
    if point is not None:
        student = distill_mod.make_student(cfg, device)
        try:
            student.load_state_dict(point.policy_state)
            # a trial load, so a state that does not fit is named here, not mid-run
            torch.optim.Adam(student.parameters()).load_state_dict(point.state["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise unfit(point, run_dir, err) from None
        optimizer_state = point.state["optimizer"]
        state = distill_mod.DistillState(point.timesteps, int(point.state["iteration"]),
                                         int(point.state["episodes"]))
    if hooks.should_stop():
        # stopped during the teacher phase: keep a resumable (untrained) student checkpoint
        state = state or distill_mod.DistillState()
        if student is None:
            student = distill_mod.make_student(cfg, device)
        optimizer = torch.optim.Adam(student.parameters(), lr=cfg.distill.learning_rate)
        hooks.save_trainer(student, _distill_trainer_state(optimizer, state), state.timesteps)
        return student, state.timesteps
    student, optimizer, state = distill_mod.distill(
        cfg, _DistillHooks(hooks), device, teacher, student, optimizer_state, state)
    if cfg.finetune.timesteps > 0 and not hooks.should_stop():
        return finetune(cfg, hooks, device, run_dir, student, state.timesteps, teacher)
    return student, state.timesteps
