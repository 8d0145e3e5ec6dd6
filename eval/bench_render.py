"""The renderer side of the speed report: TinyRenderer's fill rate, PyBullet's EGL renderer on
Mesa llvmpipe (a SIMD rasteriser) for comparison, and what passing Miniworld would take.

The EGL plugin runs in a child process: once loaded it takes over every TinyRenderer call of
the process. It cannot convert in-memory meshes, so it renders the first release's world of
primitives, and the fill-rate probe is a flat box that both renderers take.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pybullet as p

from envs.config import EnvConfig, ObservationConfig
from envs.nav_env import CameraNavEnv
from envs.quiet import quiet_stdout
from envs.scene import LEGACY
from eval.bench_env import EnvRunner, RenderOnly, _env, interleaved_rates


def _frame_fn(size: int, renderer: int, plugin: str | None = None
              ) -> tuple[int, Callable[[], None]]:
    """A fresh client (with the renderer plugin at path `plugin` loaded, if given) and a
    function rendering one `size` x `size` frame of it, 1 m above the origin looking down."""
    with quiet_stdout():
        cid = p.connect(p.DIRECT)
        if plugin is not None:
            p.loadPlugin(plugin, "_eglRendererPlugin", physicsClientId=cid)
    view = p.computeViewMatrix([0, 0, 1], [0, 0, 0], [0, 1, 0], physicsClientId=cid)
    proj = p.computeProjectionMatrixFOV(90, 1.0, 0.02, 12.0, physicsClientId=cid)

    def frame() -> None:
        p.getCameraImage(size, size, view, proj, renderer=renderer,
                         flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=cid)

    return cid, frame


def _quad(cid: int) -> int:
    """A flat 1 mm box whose top face fills the view of `_frame_fn` (a primitive, which both
    renderers take; PyBullet's EGL plugin cannot convert in-memory meshes)."""
    s = 1.05  # a little past the view's edges at 1 m with a 90 degree field of view
    vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[s, s, 0.0005],
                              rgbaColor=[0.5, 0.6, 0.7, 1], physicsClientId=cid)
    return p.createMultiBody(0, -1, vis, [0, 0, -0.0005], physicsClientId=cid)


def _fill_ns(size: int, renderer: int, frames: int, rounds: int,
             plugin: str | None = None) -> dict[str, float]:
    """Empty-frame time and the time per filled pixel of a full-screen quad, timed in
    alternating blocks on two clients."""
    empty_cid, empty = _frame_fn(size, renderer, plugin)
    full_cid, full = _frame_fn(size, renderer, plugin)
    try:
        _quad(full_cid)
        rates = interleaved_rates({"empty": lambda n: [empty() for _ in range(n)],
                                   "full": lambda n: [full() for _ in range(n)]},
                                  frames, rounds, warmup=3)
    finally:
        p.disconnect(empty_cid)
        p.disconnect(full_cid)
    empty_us, full_us = 1e6 / rates["empty"], 1e6 / rates["full"]
    return {"size": size, "empty_frame_us": round(empty_us, 2),
            "full_frame_us": round(full_us, 2),
            "ns_per_filled_pixel": round(1e3 * (full_us - empty_us) / size**2, 2)}


def fill_rate(frames: int = 600) -> dict[str, Any]:
    """TinyRenderer at 64x64: empty-frame overhead and ns per filled pixel."""
    return _fill_ns(64, p.ER_TINY_RENDERER, frames, rounds=20)


def _egl_child(frames: int) -> dict[str, Any]:
    import pkgutil

    loader = pkgutil.get_loader("eglRenderer")
    if loader is None:
        return {"available": False, "reason": "pybullet's eglRenderer plugin is missing"}
    env = _env(64, LEGACY)  # the plugin cannot convert in-memory meshes: primitives only
    with quiet_stdout():
        plugin = p.loadPlugin(loader.get_filename(), "_eglRendererPlugin",
                              physicsClientId=env._cid)
    if plugin < 0:
        env.close()
        return {"available": False, "reason": "the EGL plugin did not load (no EGL driver)"}
    try:
        rates = interleaved_rates({"env": EnvRunner(env, 0), "render": RenderOnly(env)},
                                  frames, 2, warmup=3)
    finally:
        env.close()
    plugin = loader.get_filename()
    fill = {str(size): _fill_ns(size, p.ER_BULLET_HARDWARE_OPENGL, frames, 4, plugin)
            for size in (64, 256)}
    return {"available": True, "world": "first release (primitives)",
            "env_steps_per_s": round(rates["env"], 1),
            "render_fps": round(rates["render"], 1), "fill": fill}


def egl_llvmpipe(frames: int = 40, timeout_s: float = 240.0) -> dict[str, Any]:
    """The env and a full-screen quad rendered by PyBullet's EGL plugin (Mesa llvmpipe on this
    machine), in a child process; `available` False with the reason when it cannot run."""
    root = str(Path(__file__).resolve().parents[1])
    code = ("import json, sys; from eval.bench_render import _egl_child; "
            f"sys.stdout.write('\\n' + _RESULT + json.dumps(_egl_child({int(frames)})))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        out = subprocess.run([sys.executable, "-c", code.replace("_RESULT", repr(_RESULT))],
                             capture_output=True, text=True, timeout=timeout_s, env=env,
                             cwd=root)
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": f"no result within {timeout_s:.0f} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(_RESULT)]
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"available": False, "reason": f"child exited {out.returncode}: {tail}"[:200]}
    return json.loads(lines[-1][len(_RESULT):])


_RESULT = "EGL-RESULT "


def covered_fraction(frames: int = 300, seed: int = 0) -> float:
    """Mean share of the 64x64 onboard frame covered by geometry (not sky), over the action
    cycle's poses: the pixels a rasteriser must fill."""
    env = CameraNavEnv(EnvConfig(observation=ObservationConfig(segmentation=True)))
    runner, covered = EnvRunner(env, seed), 0.0
    try:
        for _ in range(frames):
            runner(1)
            _, _, seg = env._render()
            covered += float(np.mean(seg >= 0))
    finally:
        env.close()
    return covered / frames


MINIWORLD_STEPS_PER_S = (1240.0, 1620.0)
"""Farama Miniworld 2.1 (OneRoom / FourRooms, OpenGL on Mesa llvmpipe under Xvfb, 64x64,
random actions, resets included), measured on this machine when the speed work was planned;
not re-measured here (Miniworld is not a dependency)."""
BARE_SCENE_CITED_STEPS_PER_S = 1330.0
"""The bare PyBullet scene measured in the same alternating runs as MINIWORLD_STEPS_PER_S: the
bridge from this run's env/bare ratio to Miniworld's figures (the machine's speed moves by
tens of percent between days; its ratios move much less)."""


def miniworld_gap(env_vs_bare: float, breakdown: dict[str, Any], tiny: dict[str, Any],
                  llvmpipe: dict[str, Any], covered: float, pixels: int = 64 * 64
                  ) -> dict[str, Any]:
    """Where the env stands against Miniworld and what passing its fastest figure would take.

    The env's rate in the units of the cited runs is env/bare x the cited bare scene. Passing
    Miniworld's fastest figure needs this run's step to shrink by that ratio; with the step's
    other parts as they are, the render must fit the rest, which sets the nanoseconds per
    covered pixel needed, against what a covered pixel costs in the env's frames now,
    TinyRenderer's ideal (a full-screen quad) and llvmpipe's (all measured in this run)."""
    equivalent = env_vs_bare * BARE_SCENE_CITED_STEPS_PER_S
    fastest = MINIWORLD_STEPS_PER_S[1]
    step_ms, render_ms = breakdown["step_ms"], breakdown["parts_ms"]["render"]
    target_ms = step_ms * min(1.0, equivalent / fastest)
    non_render_ms = step_ms - render_ms
    filled = covered * pixels
    empty_ms = tiny["empty_frame_us"] / 1e3
    fill_budget_ms = target_ms - non_render_ms - empty_ms
    needed_ns = 1e6 * fill_budget_ms / filled if fill_budget_ms > 0 else None
    # what a covered pixel costs in the env's frames now: bounding-box walks and overdraw
    # included, unlike the full-screen quad's ideal figure
    effective_ns = 1e6 * (render_ms - empty_ms) / filled
    llvm = (llvmpipe.get("fill", {}).get("256", {}).get("ns_per_filled_pixel")
            if llvmpipe.get("available") else None)
    return {
        "miniworld_steps_per_s": list(MINIWORLD_STEPS_PER_S),
        "bare_scene_cited_steps_per_s": BARE_SCENE_CITED_STEPS_PER_S,
        "source": "Miniworld and the bare scene measured together when the work was planned "
                  "(cited); env/bare measured in this run",
        "env_equivalent_steps_per_s": round(equivalent, 1),
        "env_vs_miniworld": [round(equivalent / MINIWORLD_STEPS_PER_S[1], 3),
                             round(equivalent / MINIWORLD_STEPS_PER_S[0], 3)],
        "step_ms": step_ms,
        "target_step_ms": round(target_ms, 4),
        "non_render_ms": round(non_render_ms, 4),
        "render_budget_ms": round(target_ms - non_render_ms, 4),
        "filled_pixels_per_frame": round(filled, 1),
        "tiny_empty_frame_us": tiny["empty_frame_us"],
        "tiny_ns_per_filled_pixel": tiny["ns_per_filled_pixel"],
        "env_ns_per_covered_pixel": round(effective_ns, 2),
        "needed_ns_per_filled_pixel": None if needed_ns is None else round(needed_ns, 2),
        "fill_speedup_needed": (None if needed_ns is None
                                else round(max(1.0, effective_ns / needed_ns), 2)),
        "llvmpipe_ns_per_filled_pixel": llvm,
    }
