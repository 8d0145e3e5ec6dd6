"""The run directory and the hooks every training method reports through.

A run directory is the only hand-off between stages:

    config.yaml          resolved config (every default filled in)
    run.json             command, versions, git commit, seeds, device, start time
    tb/                  TensorBoard logs
    monitor/             per-episode monitor CSVs (one per env)
    checkpoints/         periodic `step_<N>/` folders: policy.pt + trainer.pt (resume state)
    best/policy.pt       best held-out success so far
    final/policy.pt      the last policy
    eval_during_training.jsonl   one line per periodic held-out evaluation
    train_summary.json   wall-clock, steps/s, time to success, final numbers
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from envs.config import to_dict
from eval import metrics
from eval.report import atomic_write, torch_threads, write_json, write_text
from eval.rollout import VALIDATION_SEED, PolicyAgent, evaluate, make_eval_env
from policies.checkpoint import CHECKPOINT_NAME, LoadedPolicy, save_checkpoint
from training.config import TrainConfig, arch_dict

TRAINER_STATE = "trainer.pt"


def versions() -> dict[str, str]:
    import gymnasium
    import pybullet
    import stable_baselines3

    return {"python": platform.python_version(), "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gymnasium.__version__, "pybullet": str(pybullet.getAPIVersion()),
            "numpy": np.__version__, "platform": platform.platform(),
            "cpus": str(os.cpu_count())}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def default_run_dir(cfg: TrainConfig, config_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"CameraNav__{config_name}__{cfg.method}__s{cfg.seed}__{stamp}"


@dataclass
class StopFlag:
    """Set by SIGINT: training loops finish their current step and return cleanly."""

    requested: bool = False
    _previous: Any = None

    def install(self) -> None:
        def handler(signum, frame):
            if self.requested:  # a second Ctrl-C means now
                raise KeyboardInterrupt
            self.requested = True
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
    continuous: bool
    device: torch.device
    quiet: bool = False
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

    # -- lifecycle -----------------------------------------------------------------------
    def open(self, start_timesteps: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self._writer = SummaryWriter(str(self.run_dir / "tb"))
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
        path = self.run_dir / "monitor"
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
        """Held-out success/SPL of the current policy; keeps the best checkpoint."""
        env_cfg = dataclasses.replace(self.cfg.env, split=self.cfg.eval.split)
        env = make_eval_env(env_cfg, self.continuous, self.cfg.frame_stack)
        agent = PolicyAgent(LoadedPolicy(policy, {"action_space": {
            "type": "box" if self.continuous else "discrete"}}, Path()))
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
        with open(self.run_dir / "eval_during_training.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self.log_scalars(timesteps, {"eval/success_rate": row["success_rate"] or 0.0,
                                     "eval/spl": row["spl"] or 0.0})
        success, spl = row["success_rate"] or 0.0, row["spl"] or 0.0
        if (success, spl) > (self.best_success, self.best_spl):
            self.best_success, self.best_spl = success, spl
            self.save_policy(policy, "best", timesteps, extra={"heldout_success": success,
                                                               "heldout_spl": spl})
        if self.time_to_success_s is None and success >= 0.9:
            self.time_to_success_s = elapsed
        self.last_eval_at = timesteps
        if self._bar is not None:
            self._bar.write(f"[eval @ {timesteps:,} steps, {elapsed / 60:.1f} min] "
                            f"{self.cfg.eval.split} success {success:.2f}, SPL {spl:.2f}")
        return row

    def eval_due(self, timesteps: int) -> bool:
        every = self.cfg.eval.every_timesteps
        return every > 0 and timesteps - self.last_eval_at >= every

    def checkpoint_due(self, timesteps: int) -> bool:
        return timesteps - self.last_ckpt_at >= self.cfg.checkpoint_every_timesteps

    def save_policy(self, policy, name: str, timesteps: int, extra: dict | None = None) -> Path:
        meta = {"env": to_dict(self.cfg.env), "method": self.cfg.method,
                "frame_stack": self.cfg.frame_stack, "continuous": self.continuous,
                "timesteps": timesteps, "seed": self.cfg.seed, **(extra or {})}
        return save_checkpoint(self.run_dir / name / CHECKPOINT_NAME, policy, arch_dict(self.cfg),
                               meta)

    def save_trainer(self, policy, trainer_state: dict[str, Any], timesteps: int) -> Path:
        """A resumable checkpoint: policy.pt + trainer.pt (optimizer, counters), atomically."""
        folder = self.run_dir / "checkpoints" / f"step_{timesteps:09d}"
        self.save_policy(policy, str(folder.relative_to(self.run_dir)), timesteps)
        state = {**trainer_state, "timesteps": timesteps, "wall_clock_s": self.elapsed_s(),
                 "best_success": self.best_success, "best_spl": self.best_spl,
                 "time_to_success_s": self.time_to_success_s}
        atomic_write(folder / TRAINER_STATE, lambda tmp: torch.save(state, tmp))
        write_json(self.run_dir / "checkpoints" / "latest.json", {"path": folder.name,
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


def latest_trainer_state(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest resumable checkpoint of a run (weights-only load)."""
    pointer = run_dir / "checkpoints" / "latest.json"
    if not pointer.is_file():
        raise FileNotFoundError(f"{run_dir} has no resumable checkpoint "
                                "(checkpoints/latest.json); start a new run instead")
    folder = run_dir / "checkpoints" / json.loads(pointer.read_text())["path"]
    state = torch.load(folder / TRAINER_STATE, map_location="cpu", weights_only=True)
    return folder, state


def write_run_files(run_dir: Path, cfg: TrainConfig, argv: list[str], device: str) -> None:
    """config.yaml and run.json, written before training starts."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    previous = {}
    if (run_dir / "run.json").is_file():
        previous = json.loads((run_dir / "run.json").read_text())
    write_json(run_dir / "run.json", {
        **previous,
        "command": " ".join(["embodied", *argv]) if argv else None,
        "commands": previous.get("commands", []) + [" ".join(["embodied", *argv])],
        "versions": versions(),
        "git_commit": git_commit(),
        "seed": cfg.seed,
        "env_seeds": [cfg.seed + i for i in range(cfg.n_envs)],
        "device": device,
        "started": previous.get("started", datetime.now(timezone.utc).isoformat()),
        "python_executable": sys.executable,
        "randomization_groups": {f.name: f.metadata["group"]
                                 for f in dataclasses.fields(cfg.env.randomization)},
    })
