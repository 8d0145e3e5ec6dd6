"""Benchmarks of the environment: env steps/s against the render-only bound of the same camera
and against a bare PyBullet scene, where a step's time goes, the measured alternatives behind
the renderer and physics decisions, a naive mesh-robot baseline, memory growth over many
resets, and the oracle's held-out success.

Each function returns a JSON-ready dict and writes nothing; the caller saves it. Timings use
`time.perf_counter` after a warm-up, alternatives are timed in alternating blocks (only their
ratios are steady on a busy 2-core machine), and the machine (CPU, cores, load, versions) is
recorded beside them because absolute figures move by +-25 %.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import numpy as np
import pybullet_data

import rundir
from envs.config import EnvConfig, RandomizationConfig
from envs.nav_env import CameraNavEnv
from eval import bench_env as alt
from eval import bench_render as rend
from eval import metrics
from eval.rollout import OracleAgent, evaluate

TARGETS = {
    "env_vs_bound": 0.8,
    "steps_per_s_64": 1000.0,
    "env_vs_bare": 0.8,
    "non_render_fraction": 0.10,
    "rss_growth_mb": 5.0,
    "oracle_success": 0.95,
}
"""What the figures should reach: env >= 80 % of the render-only bound and of the bare
PyBullet scene, >= 1,000 steps/s at 64x64, <= 10 % of a step outside the renderer, < 5 MB RSS
growth over the reset run, oracle success >= 95 %."""

WARMUP = 50
"""Steps (or frames) run before timing, so caches settle."""
ROUNDS = 20
"""Alternating blocks per measurement: short blocks, so that a burst of background load lands
on every contender alike; each render-only block uses the pose the env reached, so the bound
averages over 20 poses (render cost varies ~1.8x with the view)."""
RESET_WARMUP = 20
"""Resets run before the first RSS reading: texture files, caches and allocator pools fill."""
NAIVE_RESOLUTION = 64
MESH_ROBOT_URDF = "racecar/racecar.urdf"
"""A mesh robot shipped with pybullet_data (~13k triangles), for the naive baseline."""
MESH_ROBOT_AHEAD_M = 1.0


def machine_info() -> dict[str, Any]:
    """CPU model, core count, 1-minute load and the simulation libraries' versions."""
    return rundir.machine_info(("pybullet", "numpy", "gymnasium"))


def rss_mb() -> float:
    """Resident set size of this process (MB), from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 1e6


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


def _row(resolution: int, steps: int, seed: int, on_reset: alt.Reset | None = None) -> dict:
    """Env steps/s against the render-only fps of its own camera at the poses it reaches."""
    env = alt._env(resolution)
    try:
        rates = alt.interleaved_rates({"env": alt.EnvRunner(env, seed, on_reset),
                                       "render": alt.RenderOnly(env)}, steps, ROUNDS, WARMUP)
    finally:
        env.close()
    env_rate, bound = rates["env"], rates["render"]
    return {"resolution": resolution, "env_steps_per_s": round(env_rate, 1),
            "render_fps": round(bound, 1), "env_vs_bound": round(env_rate / bound, 3)}


def _memory(resets: int, seed: int) -> dict[str, Any]:
    """RSS growth (MB) over `resets` randomized resets after a warm-up, and the mean reset time."""
    env = alt._env(NAIVE_RESOLUTION)
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


NARROW_LENS_DEG = (80.0, 95.0)
"""The field of view the env drew its camera from before today's wider lens."""


def _side_by_side(steps: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(bare_scene, lens): the env at 64x64 beside the bare PyBullet scene and beside itself
    with the narrower lens it replaced (same seed, so the same scenes), with each env's
    render-only bound, all timed in one run of alternating blocks."""
    env, bare = alt._env(64), alt.BareScene(64, seed)
    narrow = alt._env(64, randomization=RandomizationConfig(camera_fov_deg=NARROW_LENS_DEG))
    try:
        rates = alt.interleaved_rates({
            "env": alt.EnvRunner(env, seed), "bare": bare, "render": alt.RenderOnly(env),
            "narrow": alt.EnvRunner(narrow, seed), "narrow_render": alt.RenderOnly(narrow)},
            steps, ROUNDS, WARMUP)
    finally:
        env.close()
        narrow.close()
        bare.close()
    bare_scene = {"scene": bare.describe(),
                  "env_steps_per_s": round(rates["env"], 1),
                  "bare_steps_per_s": round(rates["bare"], 1),
                  "env_render_fps": round(rates["render"], 1),
                  "env_vs_bare": round(rates["env"] / rates["bare"], 3)}
    lens = {"fov_deg": list(RandomizationConfig().camera_fov_deg),
            "narrow_fov_deg": list(NARROW_LENS_DEG),
            "env_steps_per_s": bare_scene["env_steps_per_s"],
            "narrow_env_steps_per_s": round(rates["narrow"], 1),
            "render_fps": bare_scene["env_render_fps"],
            "narrow_render_fps": round(rates["narrow_render"], 1),
            "env_vs_narrow": round(rates["env"] / rates["narrow"], 3)}
    return bare_scene, lens


def _alternatives(steps: int, seed: int) -> dict[str, Any]:
    """The measured alternatives behind the renderer and physics decisions."""
    env = alt._env(64)
    try:
        breakdown = alt.step_breakdown(env, steps, seed)
    finally:
        env.close()
    bare, lens = _side_by_side(steps, seed)
    tiny = rend.fill_rate(frames=max(200, steps))
    egl = rend.egl_llvmpipe(frames=max(8, steps // 15))
    covered = rend.covered_fraction(frames=max(100, steps // 5), seed=seed)
    return {
        "bare_scene": bare,
        "lens": lens,
        "breakdown": breakdown,
        "geometry_variants": alt.geometry_variants(max(2, steps // 100), 3, seed),
        "physics_rates": alt.contact_agreement(episodes=2 + steps // 500, seed=seed),
        "renderers": {"tiny_renderer_fill": tiny, "egl_llvmpipe": egl,
                      "covered_fraction": round(covered, 4)},
        "miniworld_gap": rend.miniworld_gap(bare["env_vs_bare"], breakdown, tiny, egl,
                                            covered),
    }


def bench_env(resolutions: tuple[int, ...] = (48, 64, 84), steps: int = 1000,
              resets: int = 1000, seed: int = 0, alternatives: bool = True) -> dict[str, Any]:
    """Env throughput per resolution against its render-only bound, the mesh-robot baseline
    at 64x64, memory growth over `resets` resets and, with `alternatives`, the speed report.

    Keys: machine, settings, resolutions (one row each: resolution, env_steps_per_s,
    render_fps, env_vs_bound), naive_mesh_robot (the same row with racecar.urdf in view, plus
    speedup_of_primitive_robot, None when 64 is not among `resolutions`), memory (resets,
    rss_growth_mb, reset_ms), targets; with `alternatives` also bare_scene (env vs the bare
    PyBullet scene, side by side), lens (the env with today's field of view against the
    narrower one it replaced, side by side), breakdown (ms per part of a step), geometry_variants,
    physics_rates (contact agreement per solver rate), renderers (TinyRenderer and EGL on
    llvmpipe fill rates, covered share of a frame) and miniworld_gap.
    """
    machine = machine_info()  # the load before this benchmark adds its own
    rows = [_row(r, steps, seed) for r in resolutions]
    naive = _row(NAIVE_RESOLUTION, steps, seed, on_reset=add_mesh_robot)
    ours = next((r["env_steps_per_s"] for r in rows if r["resolution"] == NAIVE_RESOLUTION), None)
    speedup = None if ours is None else round(ours / naive["env_steps_per_s"], 2)
    result = {
        "machine": machine,
        "settings": {"resolutions": list(resolutions), "steps": steps, "resets": resets,
                     "seed": seed, "warmup_steps": WARMUP, "rounds": ROUNDS,
                     "warmup_resets": RESET_WARMUP, "alternatives": alternatives},
        "resolutions": rows,
        "naive_mesh_robot": {"urdf": MESH_ROBOT_URDF, **naive,
                             "speedup_of_primitive_robot": speedup},
        "memory": _memory(resets, seed),
        "targets": dict(TARGETS),
    }
    if alternatives:
        result.update(_alternatives(steps, seed))
    # other users' load moves during a run: the ratios hold, the absolute figures less so
    result["settings"]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    return result


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


def _format_lens(lens: dict[str, Any] | None) -> list[str]:
    if not lens:
        return []
    wide, narrow = lens["fov_deg"], lens["narrow_fov_deg"]
    return [f"lens {wide[0]:g}-{wide[1]:g} deg vs {narrow[0]:g}-{narrow[1]:g} deg, side by "
            f"side: env {lens['env_steps_per_s']:,.0f} vs {lens['narrow_env_steps_per_s']:,.0f} "
            f"steps/s ({lens['env_vs_narrow']:.2f}x), render-only {lens['render_fps']:,.0f} vs "
            f"{lens['narrow_render_fps']:,.0f} fps"]


def _format_alternatives(result: dict[str, Any]) -> list[str]:
    bare, parts = result["bare_scene"], result["breakdown"]
    ratio, share = bare["env_vs_bare"], parts["non_render_fraction"]
    lines = [f"64x64 side by side: env {bare['env_steps_per_s']:,.0f} steps/s "
             f"{_mark(bare['env_steps_per_s'] >= TARGETS['steps_per_s_64'])} "
             f"(>= {TARGETS['steps_per_s_64']:,.0f}), bare PyBullet scene "
             f"{bare['bare_steps_per_s']:,.0f} steps/s: env/bare {ratio:.2f} "
             f"{_mark(ratio >= TARGETS['env_vs_bare'])} (>= {TARGETS['env_vs_bare']:.0%})",
             f"step {parts['step_ms']:.3f} ms: " + ", ".join(
                 f"{k} {v:.3f}" for k, v in parts["parts_ms"].items())
             + f" ms; outside the renderer {share:.1%} "
               f"{_mark(share <= TARGETS['non_render_fraction'])} "
               f"(<= {TARGETS['non_render_fraction']:.0%}), "
               f"{parts['non_render_fraction_without_rebuilds']:.1%} without world rebuilds",
             *_format_lens(result.get("lens")),
             "render-only fps of each world build over the same views, 64x64 "
             f"(x the chosen build): {' | '.join(alt.DRIVERS)}"]
    for row in result["geometry_variants"]:
        cells = " | ".join(f"{row[f'render_fps|{d}']:>6,.0f} ({row[f'vs_chosen|{d}']:.2f}x)"
                           for d in alt.DRIVERS)
        lines.append(f"  {row['variant'][:72]:<72} {cells}")
    ref = result["physics_rates"]["reference"]
    lines.append(f"contacts vs the first release's 60 Hz loop over "
                 f"{result['physics_rates']['samples']} steps (it collides in "
                 f"{ref['collision_rate']:.1%}):")
    for row in result["physics_rates"]["rates"]:
        lines.append(f"  {row['physics_hz']:>3} Hz: flag agrees {row['flag_agreement']:.1%}, "
                     f"end position off {row['mean_position_diff_mm']:.2f} mm mean / "
                     f"{row['max_position_diff_mm']:.1f} mm max")
    rend, gap = result["renderers"], result["miniworld_gap"]
    tiny, egl = rend["tiny_renderer_fill"], rend["egl_llvmpipe"]
    lines.append(f"TinyRenderer 64x64: {tiny['empty_frame_us']:.0f} us empty frame, "
                 f"{tiny['ns_per_filled_pixel']:.0f} ns per filled pixel; frames "
                 f"{rend['covered_fraction']:.0%} covered")
    if egl.get("available"):
        lines.append(f"EGL plugin on llvmpipe: env {egl['env_steps_per_s']:,.0f} steps/s, "
                     f"render {egl['render_fps']:,.0f} fps, "
                     f"{egl['fill']['256']['ns_per_filled_pixel']:.1f} ns per filled pixel "
                     "at 256x256")
    else:
        lines.append(f"EGL plugin on llvmpipe: not measured ({egl['reason']})")
    needed, (lo, hi) = gap["needed_ns_per_filled_pixel"], gap["env_vs_miniworld"]
    mini = gap["miniworld_steps_per_s"]
    lines.append(f"Miniworld {mini[0]:,.0f}-{mini[1]:,.0f} steps/s (cited, beside a bare scene "
                 f"of {gap['bare_scene_cited_steps_per_s']:,.0f}): env at {lo:.2f}-{hi:.2f}x; "
                 "passing the fastest needs "
                 + ("no faster render" if gap["target_step_ms"] >= gap["step_ms"] else
                    "a render budget below the step's other parts" if needed is None else
                    f"<= {needed:.0f} ns per covered pixel: {gap['fill_speedup_needed']:.2f}x "
                    f"today's {gap['env_ns_per_covered_pixel']:.0f} (a full-screen quad: "
                    f"{gap['tiny_ns_per_filled_pixel']:.0f})"))
    return lines


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
    if "breakdown" in result:
        lines += _format_alternatives(result)
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
