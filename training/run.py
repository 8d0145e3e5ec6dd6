"""The run directory's writer and the hooks every training method reports through.

The run directory's layout and file names are in `rundir` (the only hand-off between stages).
Training writes config.yaml and run.json first, then TensorBoard logs, monitor CSVs, periodic
resumable checkpoints, the best and final policies, the validation curve and a summary.

Ctrl-C: the first press lets the current iteration finish, saves a resumable checkpoint and
returns; the second stops at once (`StopNow`), ending the env workers and saving nothing more,
so the last checkpoint stays as it was.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import rundir
from envs.config import to_dict
from eval import metrics
from eval.rollout import VALIDATION_SEED, PolicyAgent, evaluate, make_eval_env
from policies.checkpoint import CHECKPOINT_NAME, LoadedPolicy, save_checkpoint
from policies.threads import torch_threads
from training.config import TrainConfig, arch_dict

PACKAGES = ("torch", "stable_baselines3", "gymnasium", "pybullet", "numpy")
"""Distributions whose versions run.json records."""

STOP_SOON = ("\nStopping after the current iteration and saving a checkpoint; press Ctrl-C "
             "again to stop now.\n")
STOP_NOW = "\nStopping now: ending the env workers; nothing more is saved.\n"


def versions() -> dict[str, str]:
    """Python and the training libraries' versions, as run.json records them."""
    return {"python": platform.python_version(), **rundir.package_versions(PACKAGES)}


def default_run_dir(cfg: TrainConfig, config_name: str) -> Path:
    """`runs/CameraNav__<config>__<method>__s<seed>__<time>` (a new folder per run)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(rundir.DEFAULT_RUNS_DIR) / (f"CameraNav__{config_name}__{cfg.method}__"
                                            f"s{cfg.seed}__{stamp}")


class StopNow(KeyboardInterrupt):
    """Raised by a second Ctrl-C: training stops at once and saves nothing more."""


@dataclass
class StopFlag:
    """Set by SIGINT: training loops finish their current step and return cleanly; a second
    SIGINT raises `StopNow` wherever the main thread is (often waiting on an env step)."""

    requested: bool = False
    forced: bool = False
    _previous: Any = None

    def install(self) -> None:
        # Python delivers signals to the main thread only; a host that runs train() in another
        # thread (a Ray Tune trial) stops it by its own means.
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            # os.write, not print: the handler may run in the middle of a progress-bar write
            if self.forced:
                return  # already stopping now; let the shutdown finish
            if self.requested:
                self.forced = True
                os.write(2, STOP_NOW.encode())
                raise StopNow
            self.requested = True
            os.write(2, STOP_SOON.encode())
        self._previous = signal.signal(signal.SIGINT, handler)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class TrainingHooks:
    """Progress, TensorBoard, periodic held-out evaluation, checkpoints and best model."""

    cfg: TrainConfig
    run_dir: Path
    total_timesteps: int
    device: torch.device
    quiet: bool = False
    on_eval: Callable[[dict[str, Any]], None] | None = None
    """Called with each periodic evaluation's row once it is logged (a sweep reports it)."""
    stop: StopFlag = field(default_factory=StopFlag)
    best_success: float = -1.0
    best_spl: float = -1.0
    last_eval_at: int = 0
    last_ckpt_at: int = 0
    time_to_success_s: float | None = None
    wall_offset_s: float = 0.0
    recent_success: list[float] = field(default_factory=list)
    _start: float = field(default_factory=time.perf_counter)
    _writer: Any = None
    _bar: Any = None

    @property
    def continuous(self) -> bool:
        """Whether the run trains the continuous action variant (the config says)."""
        return self.cfg.continuous

    # -- lifecycle -----------------------------------------------------------------------
    def open(self, start_timesteps: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self._writer = SummaryWriter(str(self.run_dir / rundir.TB_DIR))
        self._bar = tqdm(total=self.total_timesteps, initial=start_timesteps, unit="step",
                         dynamic_ncols=True, disable=self.quiet, desc=self.cfg.method,
                         smoothing=0.1)
        self.last_eval_at = self.last_ckpt_at = start_timesteps
        self._start = time.perf_counter()
        self.stop.install()

    def close(self) -> None:
        self.stop.uninstall()
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()

    @property
    def monitor_dir(self) -> str:
        path = self.run_dir / rundir.MONITOR_DIR
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def elapsed_s(self) -> float:
        return self.wall_offset_s + time.perf_counter() - self._start

    def should_stop(self) -> bool:
        return self.stop.requested or self.budget_spent()

    def budget_spent(self) -> bool:
        budget = self.cfg.time_budget_s
        return budget > 0 and self.elapsed_s() >= budget

    # -- reporting -----------------------------------------------------------------------
    def log_scalars(self, timesteps: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, timesteps)

    def progress(self, timesteps: int, successes: list[float]) -> None:
        self.recent_success = successes[-100:]
        if self._bar is not None:
            postfix = {}
            if self.recent_success:
                postfix["success"] = f"{np.mean(self.recent_success):.2f}"
            if self.best_success >= 0:
                postfix["heldout"] = f"{self.best_success:.2f}"
            self._bar.set_postfix(postfix, refresh=False)
            # update() lets tqdm throttle redraws; a forced refresh per vec step costs time
            self._bar.update(max(0, min(timesteps, self.total_timesteps) - self._bar.n))

    def for_teacher(self, total_timesteps: int) -> TeacherHooks:
        """Hooks for the privileged teacher phase: its own progress bar, same stop flag."""
        return TeacherHooks(self, total_timesteps)

    # -- evaluation, checkpoints -----------------------------------------------------------
    def evaluate(self, policy, timesteps: int) -> dict[str, Any]:
        """Held-out success/SPL of the current policy; keeps the best one so far in best/ (to
        compare: a run directory stands for its final policy, `rundir.POLICY_DIRS`)."""
        env_cfg = dataclasses.replace(self.cfg.env, split=self.cfg.eval.split)
        env = make_eval_env(env_cfg, self.continuous)
        agent = PolicyAgent(LoadedPolicy(policy, None, Path()))
        was_training = policy.training
        policy.set_training_mode(False)
        try:
            # batch-1 inference: a second thread only adds synchronisation cost
            with torch_threads(1):
                records = list(evaluate(env, agent, self.cfg.eval.episodes,
                                        seed=VALIDATION_SEED))
        finally:
            env.close()
            policy.set_training_mode(was_training)
        summary = metrics.summarize(records)
        elapsed = self.elapsed_s()
        row = {"timesteps": timesteps, "wall_clock_s": round(elapsed, 1),
               "success_rate": summary["success_rate"], "spl": summary["spl"],
               "soft_spl": summary["soft_spl"], "episodes": summary["episodes"],
               "collisions_per_episode": summary["collisions_per_episode"]}
        rundir.append_jsonl(self.run_dir / rundir.EVAL_DURING_TRAINING_FILE, row)
        self.log_scalars(timesteps, {"eval/success_rate": row["success_rate"] or 0.0,
                                     "eval/spl": row["spl"] or 0.0})
        success, spl = row["success_rate"] or 0.0, row["spl"] or 0.0
        if (success, spl) > (self.best_success, self.best_spl):
            self.best_success, self.best_spl = success, spl
            self.save_policy(policy, rundir.BEST_DIR, timesteps,
                             extra={"heldout_success": success, "heldout_spl": spl})
        if self.time_to_success_s is None and success >= 0.9:
            self.time_to_success_s = elapsed
        self.last_eval_at = timesteps
        if self._bar is not None:
            self._bar.write(f"[eval @ {timesteps:,} steps, {elapsed / 60:.1f} min] "
                            f"{self.cfg.eval.split} success {success:.2f}, SPL {spl:.2f}")
        if self.on_eval is not None:
            self.on_eval(row)
        return row

    def eval_due(self, timesteps: int) -> bool:
        every = self.cfg.eval.every_timesteps
        return every > 0 and timesteps - self.last_eval_at >= every

    def checkpoint_due(self, timesteps: int) -> bool:
        return timesteps - self.last_ckpt_at >= self.cfg.checkpoint_every_timesteps

    def save_policy(self, policy, name: str, timesteps: int, extra: dict | None = None) -> Path:
        meta = {"env": to_dict(self.cfg.env), "method": self.cfg.method,
                "timesteps": timesteps, "seed": self.cfg.seed, **(extra or {})}
        return save_checkpoint(self.run_dir / name / CHECKPOINT_NAME, policy, arch_dict(self.cfg),
                               meta)

    def save_trainer(self, policy, trainer_state: dict[str, Any], timesteps: int) -> Path:
        """A resumable checkpoint: policy.pt + trainer.pt (optimizer, counters), atomically."""
        folder = self.run_dir / rundir.CHECKPOINTS_DIR / rundir.step_dir_name(timesteps)
        self.save_policy(policy, str(folder.relative_to(self.run_dir)), timesteps)
        state = {**trainer_state, "timesteps": timesteps, "wall_clock_s": self.elapsed_s(),
                 "best_success": self.best_success, "best_spl": self.best_spl,
                 "time_to_success_s": self.time_to_success_s}
        # trainer.pt before latest.json: the pointer only ever names a complete checkpoint
        rundir.atomic_write(folder / rundir.TRAINER_FILE, lambda tmp: torch.save(state, tmp))
        rundir.write_json(self.run_dir / rundir.LATEST_FILE, {"path": folder.name,
                                                               "timesteps": timesteps})
        self.last_ckpt_at = timesteps
        return folder


class TeacherHooks:
    """Progress and Ctrl-C for the teacher; no camera evaluation or checkpoints."""

    def __init__(self, parent: TrainingHooks, total_timesteps: int):
        from tqdm import tqdm

        self.parent = parent
        self.continuous = parent.continuous
        self._bar = tqdm(total=total_timesteps, unit="step", dynamic_ncols=True,
                         disable=parent.quiet, desc="teacher (privileged state)")

    def progress(self, timesteps: int, successes: list[float]) -> None:
        if successes:
            self._bar.set_postfix({"success": f"{np.mean(successes[-100:]):.2f}"},
                                  refresh=False)
        self._bar.update(max(0, min(timesteps, self._bar.total) - self._bar.n))
        if timesteps >= self._bar.total:
            self._bar.close()

    def eval_due(self, timesteps: int) -> bool:
        return False

    def checkpoint_due(self, timesteps: int) -> bool:
        return False

    def should_stop(self) -> bool:
        return self.parent.should_stop()


def write_run_files(run_dir: Path, cfg: TrainConfig, argv: list[str], device: str) -> None:
    """config.yaml and run.json, written before training starts (a resume adds its command)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_text(run_dir / rundir.CONFIG_FILE, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    run_file = run_dir / rundir.RUN_FILE
    previous = rundir.read_json(run_file) if run_file.is_file() else {}
    if not isinstance(previous, dict):
        raise rundir.RunFileError(f"{run_file} is not a JSON object; delete or restore it")
    command = " ".join(["embodied", *argv])
    rundir.write_json(run_file, {
        **previous,
        "command": command if argv else None,
        "commands": [*previous.get("commands", []), command],
        "versions": versions(),
        "machine": rundir.machine_info(),
        "git_commit": rundir.git_commit(),
        "seed": cfg.seed,
        "env_seeds": [cfg.seed + i for i in range(cfg.n_envs)],
        "device": device,
        "started": previous.get("started", rundir.utc_now()),
        "python_executable": sys.executable,
        "randomization_groups": {f.name: f.metadata["group"]
                                 for f in dataclasses.fields(cfg.env.randomization)},
    })
