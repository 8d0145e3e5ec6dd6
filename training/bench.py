"""Training benchmarks: PPO throughput per vec-env layout, and wall-clock to success per method.

`bench_train` measures end-to-end PPO steps/s (collection + updates) side by side in one run:
the naive layout (1 env in-process, torch's default threads) against 2, 4 and 8 subprocess
envs with 1 torch thread while collecting and 2 while training; then PPO and DAgger end to
end on the first release's world build against today's (`env.world_build`), and DAgger taking
turns (collect, then fit) against fitting while it collects. `bench_learn` trains
each method under the same wall-clock budget and reports when the periodic held-out
evaluation first reached 90 % success, confirmed by a final 200-episode held-out evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

import rundir
from envs.config import ConfigError
from eval.report import evaluate_all
from eval.rollout import TEST_SEED
from policies.checkpoint import resolve_checkpoint
from policies.threads import torch_threads
from training.config import TrainConfig, load_config
from training.distill import distill
from training.experts import distillation_teacher
from training.ppo import ThreadPhases, make_ppo
from training.train import train
from training.vec import make_vec_env, running

PACKAGES = ("pybullet", "numpy", "gymnasium", "torch", "stable_baselines3")
"""Versions stamped on the training benchmarks' machine record."""

LAYOUTS = (
    # (label, n_envs, vec_env, threads while collecting, threads while training)
    ("naive: 1 env in-process, default threads", 1, "dummy", None, None),
    ("2 subprocess envs, 1/2 threads", 2, "subproc", 1, 2),
    ("4 subprocess envs, 1/2 threads", 4, "subproc", 1, 2),
    ("8 subprocess envs, 1/2 threads", 8, "subproc", 1, 2),
)


def _ppo_steps_per_s(cfg: TrainConfig, n_envs: int, vec_env: str, collect: int | None,
                     train_threads: int | None, steps: int) -> float:
    venv = make_vec_env(cfg.env, n_envs, cfg.seed, False, kind=vec_env)
    # the callback changes torch's thread count; torch_threads puts the current one back
    with running(venv), torch_threads(torch.get_num_threads()):
        model = make_ppo(cfg, venv, "cpu", None)
        callback = None if collect is None else ThreadPhases(collect, train_threads)
        model.learn(cfg.ppo.n_steps * n_envs, callback=callback)  # warm-up: workers, caches
        start = time.perf_counter()
        model.learn(steps, callback=callback, reset_num_timesteps=False)
        elapsed = time.perf_counter() - start
    return steps / elapsed


def bench_train(steps: int = 4096, config: str = "ppo", world_builds: bool = True
                ) -> dict[str, Any]:
    """End-to-end PPO steps/s (64x64 camera) for each layout in `LAYOUTS`, then (with
    `world_builds`) PPO and DAgger on the first release's world build against today's, and
    DAgger taking turns against fitting while it collects."""
    cfg = load_config(config)
    steps = max(steps, 2 * cfg.ppo.n_steps * 4)
    rows = []
    for label, n_envs, vec_env, collect, train_threads in LAYOUTS:
        rows.append({"layout": label, "n_envs": n_envs, "vec_env": vec_env,
                     "threads": "default" if collect is None else f"{collect}/{train_threads}",
                     "steps_per_s": round(_ppo_steps_per_s(cfg, n_envs, vec_env, collect,
                                                           train_threads, steps), 1)})
    best = max(r["steps_per_s"] for r in rows[1:])
    return {"machine": rundir.machine_info(PACKAGES), "steps": steps, "config": config,
            "batch_size": cfg.ppo.batch_size, "n_steps": cfg.ppo.n_steps,
            "n_epochs": cfg.ppo.n_epochs, "rows": rows,
            "speedup": round(best / rows[0]["steps_per_s"], 2), "target_steps_per_s": 400,
            "world_builds": bench_world_builds(steps) if world_builds else None,
            "distill_schedules": bench_distill_schedules() if world_builds else None}


class _RateHooks:
    """Just enough of the training hooks for `distill`: it records the wall clock and step
    count at the end of every DAgger iteration (collection and gradient steps)."""

    continuous, monitor_dir = False, None

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def should_stop(self) -> bool:
        return False

    def progress(self, timesteps: int) -> float:
        return 0.0

    def on_iteration(self, student, optimizer, state, stats) -> None:
        self.marks.append((time.perf_counter(), state.timesteps))


def _distill_steps_per_s(cfg: TrainConfig, iterations: int) -> float:
    """DAgger end to end (collection with labels, then gradient steps), between the ends of
    its first and last iterations, so the workers' start-up is left out."""
    # half the preset's iteration (and half its gradient steps: the same work per frame), so
    # that each build's measurement takes about a minute
    per_iteration = cfg.distill.steps_per_iteration // 2
    d = dataclasses.replace(cfg.distill, steps_per_iteration=per_iteration,
                            grad_steps_per_iteration=cfg.distill.grad_steps_per_iteration // 2,
                            total_timesteps=per_iteration * (iterations + 1),
                            expert_iterations=1, beta_decay_iterations=1)
    hooks = _RateHooks()
    with torch_threads(torch.get_num_threads()):
        distill(dataclasses.replace(cfg, distill=d), hooks, torch.device("cpu"))
    (t0, n0), (t1, n1) = hooks.marks[0], hooks.marks[-1]
    return (n1 - n0) / (t1 - t0)


WORLD_BUILD_LABELS = {"first-release": "first release's world build",
                      "fast": "today's world build (fast)"}


def bench_world_builds(steps: int = 4096, iterations: int = 3) -> dict[str, Any]:
    """PPO (`ppo` preset, 4 subprocess envs, 1/2 threads) and DAgger (`default` preset) end to
    end on each `env.world_build`, side by side in one run."""
    rows = []
    for build in ("first-release", "fast"):
        ppo_cfg = load_config("ppo", [f"env.world_build={build}"])
        n_steps = max(steps, 2 * ppo_cfg.ppo.n_steps * 4)
        ppo = _ppo_steps_per_s(ppo_cfg, 4, "subproc", 1, 2, n_steps)
        dagger = _distill_steps_per_s(load_config("default", [f"env.world_build={build}"]),
                                      iterations)
        rows.append({"world_build": build, "label": WORLD_BUILD_LABELS[build],
                     "ppo_steps_per_s": round(ppo, 1), "distill_steps_per_s": round(dagger, 1)})
    old, new = rows
    return {"rows": rows, "ppo_steps": n_steps, "distill_iterations": iterations,
            "ppo_speedup": round(new["ppo_steps_per_s"] / old["ppo_steps_per_s"], 2),
            "distill_speedup": round(new["distill_steps_per_s"] / old["distill_steps_per_s"], 2)}


SCHEDULE_LABELS = {"turns": "collect, then fit (taking turns)",
                   "overlapped": "fit while collecting (the default)"}


def bench_distill_schedules(iterations: int = 3) -> dict[str, Any]:
    """DAgger (`default` preset) end to end taking turns (collect, then fit) against fitting in
    a second thread while the envs collect (`distill.train_while_collecting`), side by side in
    one run: the same frames and gradient steps per iteration, so the ratio of their rates is
    the ratio of iterations per wall-clock minute."""
    rows = []
    for schedule, overlap in (("turns", "false"), ("overlapped", "true")):
        cfg = load_config("default", [f"distill.train_while_collecting={overlap}"])
        rows.append({"schedule": schedule, "label": SCHEDULE_LABELS[schedule],
                     "distill_steps_per_s": round(_distill_steps_per_s(cfg, iterations), 1)})
    turns, overlapped = rows
    return {"rows": rows, "iterations": iterations,
            "speedup": round(overlapped["distill_steps_per_s"] / turns["distill_steps_per_s"], 2)}


def format_train(result: dict[str, Any]) -> str:
    lines = [f"PPO end to end, 64x64 camera ({result['steps']} steps per layout):"]
    for row in result["rows"]:
        lines.append(f"  {row['layout']:<44} {row['steps_per_s']:>7.1f} steps/s")
    best = max(r["steps_per_s"] for r in result["rows"])
    mark = "ok" if best >= result["target_steps_per_s"] else "MISS"
    lines.append(f"  speed-up over naive: {result['speedup']:.2f}x   best {best:.0f} steps/s "
                 f"(target >= {result['target_steps_per_s']}: {mark})")
    builds = result.get("world_builds")
    if builds:
        lines.append("End to end on each world build (PPO: 4 subprocess envs, 1/2 threads; "
                     "DAgger: the default preset):")
        for row in builds["rows"]:
            lines.append(f"  {row['label']:<34} PPO {row['ppo_steps_per_s']:>6.1f} steps/s   "
                         f"DAgger {row['distill_steps_per_s']:>6.1f} steps/s")
        lines.append(f"  today's build over the first release's: PPO {builds['ppo_speedup']:.2f}x,"
                     f" DAgger {builds['distill_speedup']:.2f}x")
    schedules = result.get("distill_schedules")
    if schedules:
        lines.append("DAgger's schedule (the default preset, today's world build):")
        for row in schedules["rows"]:
            lines.append(f"  {row['label']:<38} {row['distill_steps_per_s']:>6.1f} steps/s")
        lines.append(f"  fitting while collecting over taking turns: {schedules['speedup']:.2f}x")
    return "\n".join(lines)


def _learn_row(method: str, run_dir: Path, final: dict[str, Any]) -> dict[str, Any]:
    summary = rundir.read_json(run_dir / rundir.TRAIN_SUMMARY_FILE)
    curve_path = run_dir / rundir.EVAL_DURING_TRAINING_FILE
    curve = rundir.read_jsonl(curve_path) if curve_path.is_file() else []
    return {"method": method, "run_dir": str(run_dir),
            "time_to_90pct_heldout_s": summary["time_to_90pct_heldout_s"],
            "final_heldout_success": final["policy"]["success_rate"],
            "final_heldout_success_ci95": final["policy"]["success_rate_ci95"],
            "final_heldout_spl": final["policy"]["spl"],
            "final_episodes": final["episodes"],
            "timesteps": summary["timesteps"], "wall_clock_s": summary["wall_clock_s"],
            "steps_per_s": summary["steps_per_s"],
            "curve": [{k: row[k] for k in ("wall_clock_s", "timesteps", "success_rate", "spl")}
                      for row in curve]}


def bench_learn(budget_s: float = 1200.0, out_dir: Path = Path(rundir.DEFAULT_BENCH_DIR),
                methods: tuple[str, ...] = ("default", "ppo"),
                final_episodes: int = 200) -> dict[str, Any]:
    """Train each preset for at most `budget_s` seconds; time to 90 % held-out success."""
    rows = []
    for preset in methods:
        cfg = dataclasses.replace(load_config(preset), time_budget_s=float(budget_s))
        run_dir = Path(out_dir) / f"learn_{preset}"
        if run_dir.exists():
            raise ConfigError(f"{run_dir} exists; remove it or pass another --out")
        train(cfg, run_dir, argv=["bench", "learn"])
        final = evaluate_all(resolve_checkpoint(run_dir),
                             split="heldout", episodes=final_episodes, seed=TEST_SEED,
                             policies=("policy",), teacher=distillation_teacher(run_dir),
                             out_dir=run_dir / rundir.eval_dir_name("heldout"))
        rows.append(_learn_row(cfg.method, run_dir, final))
    return {"machine": rundir.machine_info(PACKAGES), "budget_s": budget_s, "target_success": 0.9,
            "target_s": 1200, "rows": rows}


def format_learn(result: dict[str, Any]) -> str:
    lines = [f"Wall-clock to 90 % held-out success (budget {result['budget_s'] / 60:.0f} min "
             "per method):"]
    for row in result["rows"]:
        t = row["time_to_90pct_heldout_s"]
        reached = f"{t / 60:5.1f} min" if t is not None else "  not reached"
        lines.append(f"  {row['method']:<8} {reached}   final {row['final_episodes']}-episode "
                     f"held-out success {row['final_heldout_success']:.2f}, SPL "
                     f"{row['final_heldout_spl']:.2f}, {row['timesteps']:,} steps at "
                     f"{row['steps_per_s']:.0f} steps/s")
    return "\n".join(lines)
