"""`embodied bench sweep`: what Ray costs, and how long a real sweep takes here and on a cluster.

The same trials (configurations x seeds) run twice: one after another through
`training.train.train()` as `embodied train` would run them, and through `run_sweep` (Ray Tune,
local). Each trial asks for the CPUs of its subprocess envs, so on a machine with as many cores
as a trial needs both paths run one trial at a time and the wall-clock ratio is Ray's overhead:
starting Ray, a fresh worker process per trial, reporting. The measured per-trial cost then
projects a 5-seed x 4-configuration sweep on this machine and on clusters of N cores (trials
in waves of `cores // cpus_per_trial`, each followed by its one-CPU test scoring).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import rundir
from envs.config import ConfigError
from training.sweep import run_sweep
from training.sweep_plan import SweepSpec, make_plan, parse_grid, trial_config, trial_cpus
from training.sweep_plan import trial_name as name_of

BENCH_CONFIG = "quickstart"
BENCH_OVERRIDES = ("time_budget_s=0", "distill.total_timesteps=4000",
                   "distill.steps_per_iteration=1000", "distill.grad_steps_per_iteration=40",
                   "eval.every_timesteps=2000", "eval.episodes=5",
                   "checkpoint_every_timesteps=2000", "n_envs=2")
"""A short but real trial (about 1.5 min on 2 busy cores, held-out success near 0.8): the
quickstart recipe cut to 4,000 steps on 2 subprocess envs."""
BENCH_GRID = ("distill.learning_rate=5e-4,1e-3",)
PROJECTED = {"configs": 4, "seeds": 5}
CLUSTER_CORES = (16, 64, 256)
TARGET_RATIO = 1.10


def _load() -> float | None:
    """1-minute load average: the machine is shared, and other work skews one phase."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _project(trials: int, cores: int, cpus: int, trial_s: float, score_s: float,
             start_s: float) -> dict[str, Any]:
    """Wall-clock of `trials` equal trials on `cores`: waves of trials, then of scoring."""
    concurrent = max(1, cores // cpus)
    waves = math.ceil(trials / concurrent)
    score_waves = math.ceil(trials / max(1, cores))
    return {"cores": cores, "concurrent_trials": concurrent, "waves": waves,
            "wall_clock_s": round(start_s + waves * trial_s + score_waves * score_s, 1)}


def bench_sweep(out_dir: Path = Path(rundir.DEFAULT_BENCH_DIR), config: str = BENCH_CONFIG,
                overrides: tuple[str, ...] = BENCH_OVERRIDES, grid: tuple[str, ...] = BENCH_GRID,
                seeds: int = 2, test_episodes: int = 20,
                cluster_cores: tuple[int, ...] = CLUSTER_CORES) -> dict[str, Any]:
    """Time the same trials sequentially and as a local sweep; project a 5 x 4 sweep."""
    from training.train import train

    spec = SweepSpec(config=config, overrides=tuple(overrides), seeds=seeds,
                     grid=parse_grid(list(grid)), test_episodes=test_episodes)
    plan = make_plan(spec)
    root = Path(out_dir) / "sweep_bench"
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} exists; remove it or pass another --out")
    trials = [(c["config_id"], c["params"], s) for c in plan["configurations"]
              for s in plan["seeds"]]
    cores = os.cpu_count() or 1
    cpus = plan["max_cpus_per_trial"]
    sequential = []
    loads = {"before_sequential": _load()}
    start = time.perf_counter()
    for cid, params, seed in trials:
        cfg = trial_config(plan["base"], params, seed, trial_cpus(
            trial_config(plan["base"], params, seed), None))
        t0 = time.perf_counter()
        train(cfg, root / "sequential" / name_of(cid, seed), argv=["bench", "sweep"], quiet=True)
        sequential.append(round(time.perf_counter() - t0, 2))
    sequential_s = time.perf_counter() - start
    loads["before_sweep"] = _load()
    result = run_sweep(spec, root / "sweep", argv=["bench", "sweep"])
    loads["after_sweep"] = _load()
    if result.interrupted:
        raise KeyboardInterrupt
    t = result.timings
    sweep_s = t["ray_start_s"] + t["fit_s"]
    n = len(trials)
    concurrent = max(1, cores // cpus)
    trial_s = t["fit_s"] / math.ceil(n / concurrent)  # one wave's wall-clock
    score_s = t["score_s"] / math.ceil(n / cores)
    total = PROJECTED["configs"] * PROJECTED["seeds"]
    return {
        "machine": rundir.machine_info(("ray", "torch")),
        "config": config, "overrides": list(overrides), "grid": list(grid),
        "seeds": plan["seeds"], "trials": n, "cpus_per_trial": cpus,
        "timesteps_per_trial": plan["max_timesteps"],
        "sequential": {"wall_clock_s": round(sequential_s, 1), "per_trial_s": sequential,
                       "mean_trial_s": round(sequential_s / n, 1)},
        "sweep": {"wall_clock_s": round(sweep_s, 1), "ray_start_s": round(t["ray_start_s"], 1),
                  "fit_s": round(t["fit_s"], 1), "score_s": round(t["score_s"], 1),
                  "concurrent_trials": concurrent, "per_trial_s": round(trial_s, 1),
                  "folder": str(result.out)},
        "ratio": round(sweep_s / sequential_s, 3), "target_ratio": TARGET_RATIO,
        "load_avg_1m": loads,
        "overhead_per_trial_s": round((sweep_s - sequential_s) / n, 2),
        "projection": {
            **PROJECTED, "trials": total,
            "here": _project(total, cores, cpus, trial_s, score_s, t["ray_start_s"]),
            "clusters": [_project(total, c, cpus, trial_s, score_s, t["ray_start_s"])
                         for c in cluster_cores],
            "assumes": "cluster cores as fast as this machine's, one trial's cost as measured "
                       "here, test scoring one CPU per trial",
        },
    }


def format_sweep(result: dict[str, Any]) -> str:
    seq, sw = result["sequential"], result["sweep"]
    mark = "ok" if result["ratio"] <= result["target_ratio"] else "MISS"
    p = result["projection"]
    lines = [
        f"{result['trials']} trials of {result['timesteps_per_trial']:,} steps "
        f"({result['config']}, {result['cpus_per_trial']} CPUs each):",
        f"  one after another through train()   {seq['wall_clock_s']:>8.1f} s "
        f"({seq['mean_trial_s']:.1f} s per trial)",
        f"  embodied sweep (Ray Tune, local)    {sw['wall_clock_s']:>8.1f} s "
        f"(Ray start {sw['ray_start_s']:.1f} s; then test scoring {sw['score_s']:.1f} s)",
        f"  ratio sweep / sequential            {result['ratio']:>8.3f} "
        f"(target <= {result['target_ratio']:.2f}: {mark}); "
        f"{result['overhead_per_trial_s']:+.2f} s per trial",
        "  1-min load before sequential / before sweep / after: " + " / ".join(
            "n/a" if v is None else f"{v:.1f}" for v in result["load_avg_1m"].values()),
        f"Projected {p['seeds']}-seed x {p['configs']}-configuration sweep ({p['trials']} "
        "trials):"]
    for row in [p["here"], *p["clusters"]]:
        where = "here" if row is p["here"] else "cluster"
        lines.append(f"  {where:<8}{row['cores']:>4} cores: {row['concurrent_trials']:>3} at "
                     f"once, {row['waves']:>2} wave(s), {row['wall_clock_s'] / 60:7.1f} min")
    return "\n".join(lines)
