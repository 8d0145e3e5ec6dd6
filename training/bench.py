"""Training benchmarks: PPO throughput per vec-env layout, and wall-clock to success per method.

`bench_train` measures end-to-end PPO steps/s (collection + updates) side by side in one run:
the naive layout (1 env in-process, torch's default threads) against 2, 4 and 8 subprocess
envs with 1 torch thread while collecting and 2 while training. `bench_learn` trains
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
from policies.threads import torch_threads
from training.config import TrainConfig, load_config
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


def bench_train(steps: int = 4096, config: str = "ppo") -> dict[str, Any]:
    """End-to-end PPO steps/s (64x64 camera) for each layout in `LAYOUTS`, in one run."""
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
            "speedup": round(best / rows[0]["steps_per_s"], 2), "target_steps_per_s": 400}


def format_train(result: dict[str, Any]) -> str:
    lines = [f"PPO end to end, 64x64 camera ({result['steps']} steps per layout):"]
    for row in result["rows"]:
        lines.append(f"  {row['layout']:<44} {row['steps_per_s']:>7.1f} steps/s")
    best = max(r["steps_per_s"] for r in result["rows"])
    mark = "ok" if best >= result["target_steps_per_s"] else "MISS"
    lines.append(f"  speed-up over naive: {result['speedup']:.2f}x   best {best:.0f} steps/s "
                 f"(target >= {result['target_steps_per_s']}: {mark})")
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
        result = train(cfg, run_dir, argv=["bench", "learn"])
        final = evaluate_all(result.best_checkpoint or result.final_checkpoint,
                             split="heldout", episodes=final_episodes, seed=TEST_SEED,
                             policies=("policy",),
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
