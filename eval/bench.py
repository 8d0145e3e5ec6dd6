"""Benchmarks of the environment: env steps/s against the render-only bound of the same camera,
a naive mesh-robot baseline, memory growth over many resets, and the oracle's held-out success.

Each function returns a JSON-ready dict and writes nothing; the caller saves it. Timings use
`time.perf_counter` after a warm-up, and the machine (CPU, cores, load, versions) is recorded
beside them because figures from a busy 2-core machine move by +-25 %.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pybullet_data

from envs.config import EnvConfig, ObservationConfig
from envs.nav_env import CameraNavEnv
from envs.scene import render_camera
from eval import metrics
from eval.rollout import OracleAgent, evaluate
from policies.deploy import machine_info as deploy_machine_info

TARGETS = {
    "env_vs_bound": 0.8,
    "steps_per_s_64": 1000.0,
    "rss_growth_mb": 5.0,
    "oracle_success": 0.95,
}
"""What the figures should reach: env >= 80 % of the render-only bound, >= 1,000 steps/s at
64x64, < 5 MB RSS growth over the reset run, oracle success >= 95 %."""

ACTION_CYCLE = (0, 0, 1, 0, 2, 3, 0, 4)
"""Discrete actions driven in turn: mostly forward, with arcs and turns, so the robot roams."""
WARMUP = 50
"""Steps (or frames) run before timing, so caches settle."""
ROUNDS = 10
"""Alternating env / render-only blocks per measurement; each render block uses the pose the
env reached, so the bound averages over 10 poses (render cost varies ~1.8x with the view)."""
RESET_WARMUP = 20
"""Resets run before the first RSS reading: texture files, caches and allocator pools fill."""
NAIVE_RESOLUTION = 64
MESH_ROBOT_URDF = "racecar/racecar.urdf"
"""A mesh robot shipped with pybullet_data (~13k triangles), for the naive baseline."""
MESH_ROBOT_AHEAD_M = 1.0


def machine_info() -> dict[str, Any]:
    """CPU model, core count, 1-minute load and the simulation libraries' versions."""
    return deploy_machine_info(("pybullet", "numpy", "gymnasium"))


def rss_mb() -> float:
    """Resident set size of this process (MB), from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _env(resolution: int) -> CameraNavEnv:
    """The default env (discrete actions, RGB only) with a square camera of `resolution`."""
    obs = ObservationConfig(width=resolution, height=resolution)
    return CameraNavEnv(EnvConfig(observation=obs))


Reset = Callable[[CameraNavEnv, dict], None]


def _reset(env: CameraNavEnv, seed: int | None, on_reset: Reset | None) -> None:
    _, info = env.reset(seed=seed)
    if on_reset is not None:
        on_reset(env, info)


def _drive(env: CameraNavEnv, steps: int, t0: int, on_reset: Reset | None) -> float:
    """Seconds for `steps` env steps of the action cycle from position `t0`. Resets inside are
    counted: a trainer pays for them too."""
    start = time.perf_counter()
    for t in range(t0, t0 + steps):
        _, _, terminated, truncated, _ = env.step(ACTION_CYCLE[t % len(ACTION_CYCLE)])
        if terminated or truncated:
            _reset(env, None, on_reset)
    return time.perf_counter() - start


def _render(env: CameraNavEnv, frames: int) -> float:
    """Seconds for `frames` renders of the env's camera alone: the same client, scene, pose and
    size as a step renders (the bound a step cannot beat)."""
    obs = env.cfg.observation
    eye, target = env._camera_pose()
    fov = env.scene.values["camera_fov_deg"]
    start = time.perf_counter()
    for _ in range(frames):
        render_camera(env._client, obs.width, obs.height, eye, target, fov, env.scene)
    return time.perf_counter() - start


def _blocks(total: int) -> list[int]:
    """`total` split into ROUNDS near-equal positive blocks."""
    return [n for k in range(ROUNDS) if (n := total // ROUNDS + (k < total % ROUNDS)) > 0]


def _rates(env: CameraNavEnv, steps: int, seed: int,
           on_reset: Reset | None = None) -> tuple[float, float]:
    """(env steps/s, render-only frames/s) of one env. The two are timed in alternating blocks
    so that both see the same background load, which keeps their ratio steady on a busy
    machine; `on_reset` runs after every reset."""
    _reset(env, seed, on_reset)
    _drive(env, min(WARMUP, steps), 0, on_reset)
    _render(env, min(WARMUP, steps))
    env_s = render_s = 0.0
    t = WARMUP
    for n in _blocks(steps):
        env_s += _drive(env, n, t, on_reset)
        render_s += _render(env, n)
        t += n
    return steps / env_s, steps / render_s


def add_mesh_robot(env: CameraNavEnv, info: dict) -> int:
    """Load racecar.urdf into the env's world ~1 m in front of the robot at pose
    `info["pose"]`; its body id. Every reset rebuilds the world, so call it after each."""
    x, y, yaw = info["pose"]
    limit = env.cfg.arena_half_size_m - 0.3  # stay inside the walls, where the camera sees it
    position = np.clip([x + MESH_ROBOT_AHEAD_M * np.cos(yaw),
                        y + MESH_ROBOT_AHEAD_M * np.sin(yaw)], -limit, limit)
    path = os.path.join(pybullet_data.getDataPath(), MESH_ROBOT_URDF)
    return env._client.loadURDF(path, [float(position[0]), float(position[1]), 0.0],
                                useFixedBase=True)


def _row(resolution: int, steps: int, seed: int, on_reset: Reset | None = None) -> dict:
    env = _env(resolution)
    try:
        env_rate, bound = _rates(env, steps, seed, on_reset)
    finally:
        env.close()
    return {"resolution": resolution, "env_steps_per_s": round(env_rate, 1),
            "render_fps": round(bound, 1), "env_vs_bound": round(env_rate / bound, 3)}


def _memory(resets: int, seed: int) -> dict[str, Any]:
    """RSS growth (MB) over `resets` randomized resets after a warm-up, and the mean reset time."""
    env = _env(NAIVE_RESOLUTION)
    try:
        for k in range(RESET_WARMUP):
            env.reset(seed=seed + k)
        gc.collect()
        before = rss_mb()
        start = time.perf_counter()
        for k in range(resets):
            env.reset(seed=seed + RESET_WARMUP + k)
        elapsed = time.perf_counter() - start
        gc.collect()
        growth = rss_mb() - before
    finally:
        env.close()
    return {"resets": resets, "rss_growth_mb": round(growth, 2),
            "reset_ms": round(1e3 * elapsed / max(resets, 1), 2)}


def bench_env(resolutions: tuple[int, ...] = (48, 64, 84), steps: int = 1000,
              resets: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Env throughput per resolution against its render-only bound, the mesh-robot baseline
    at 64x64, and memory growth over `resets` resets.

    Keys: machine, settings, resolutions (one row each: resolution, env_steps_per_s,
    render_fps, env_vs_bound), naive_mesh_robot (the same row with racecar.urdf in view, plus
    speedup_of_primitive_robot, None when 64 is not among `resolutions`), memory (resets,
    rss_growth_mb, reset_ms), targets.
    """
    machine = machine_info()  # the load before this benchmark adds its own
    rows = [_row(r, steps, seed) for r in resolutions]
    naive = _row(NAIVE_RESOLUTION, steps, seed, on_reset=add_mesh_robot)
    ours = next((r["env_steps_per_s"] for r in rows if r["resolution"] == NAIVE_RESOLUTION), None)
    speedup = None if ours is None else round(ours / naive["env_steps_per_s"], 2)
    return {
        "machine": machine,
        "settings": {"resolutions": list(resolutions), "steps": steps, "resets": resets,
                     "seed": seed, "warmup_steps": WARMUP, "rounds": ROUNDS,
                     "warmup_resets": RESET_WARMUP},
        "resolutions": rows,
        "naive_mesh_robot": {"urdf": MESH_ROBOT_URDF, **naive,
                             "speedup_of_primitive_robot": speedup},
        "memory": _memory(resets, seed),
        "targets": dict(TARGETS),
    }


def bench_oracle(episodes: int = 100, split: str = "heldout") -> dict[str, Any]:
    """The privileged oracle on `episodes` evaluation episodes of `split` (default camera).

    Keys: split, episodes, errors, `oracle_<split>_success` (so `oracle_heldout_success` by
    default) with its 95 % interval, spl, collisions_per_episode, mean_steps, wall_s.
    """
    env = CameraNavEnv(EnvConfig(split=split))
    start = time.perf_counter()
    try:
        records = list(evaluate(env, OracleAgent(continuous=False), episodes))
    finally:
        env.close()
    summary = metrics.summarize(records)
    return {
        "split": split,
        "episodes": summary["episodes"],
        "errors": summary["errors"],
        f"oracle_{split}_success": summary["success_rate"],
        "success_ci95": summary["success_rate_ci95"],
        "spl": summary["spl"],
        "collisions_per_episode": summary["collisions_per_episode"],
        "mean_steps": summary["mean_steps"],
        "wall_s": round(time.perf_counter() - start, 1),
        "target": TARGETS["oracle_success"],
    }


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def format_env_bench(result: dict[str, Any]) -> str:
    """A plain-text table of `bench_env`'s result, each figure beside its target."""
    m, mem, naive = result["machine"], result["memory"], result["naive_mesh_robot"]
    lines = [f"{m['cpu']} | {m['cores']} cores | load {m['load_avg_1m']} | python {m['python']}"
             f" | pybullet {m['pybullet']}",
             f"{'camera':>8} {'env steps/s':>12} {'render-only fps':>16} {'env/bound':>10}"]
    for row in result["resolutions"]:
        res, rate, ratio = row["resolution"], row["env_steps_per_s"], row["env_vs_bound"]
        note = f"{_mark(ratio >= TARGETS['env_vs_bound'])} (>= {TARGETS['env_vs_bound']:.0%})"
        if res == NAIVE_RESOLUTION:
            ok = rate >= TARGETS["steps_per_s_64"]
            note += f", {_mark(ok)} (>= {TARGETS['steps_per_s_64']:,.0f} steps/s)"
        lines.append(f"{res:>5}x{res:<2} {rate:>12,.0f} {row['render_fps']:>16,.0f} "
                     f"{ratio:>10.2f}  {note}")
    speedup = naive["speedup_of_primitive_robot"]
    lines.append(f"naive: {naive['urdf']} in view at {naive['resolution']}x"
                 f"{naive['resolution']}: {naive['env_steps_per_s']:,.0f} steps/s, "
                 f"render-only {naive['render_fps']:,.0f} fps"
                 + ("" if speedup is None else f" (primitive robot {speedup:.1f}x faster)"))
    growth = mem["rss_growth_mb"]
    lines.append(f"RSS growth over {mem['resets']} resets: {growth:.1f} MB "
                 f"{_mark(growth < TARGETS['rss_growth_mb'])} (< {TARGETS['rss_growth_mb']:.0f} MB)"
                 f"; {mem['reset_ms']:.1f} ms per reset")
    return "\n".join(lines)


def format_oracle_bench(result: dict[str, Any]) -> str:
    """One line for `bench_oracle`'s result, beside its target."""
    split = result["split"]
    success = result[f"oracle_{split}_success"]
    lo, hi = result["success_ci95"]
    if success is None:
        return f"oracle on {split}: no valid episode ({result['errors']} errors)"
    return (f"oracle on {result['episodes']} {split} episodes: success {success:.0%} "
            f"[{lo:.0%}, {hi:.0%}] {_mark(success >= result['target'])} "
            f"(>= {result['target']:.0%}), SPL {result['spl']:.3f}, "
            f"{result['collisions_per_episode']:.2f} collisions/episode")
