"""Where an env step's time goes, and what the alternatives cost, measured side by side.

- `BareScene`: the speed reference, a bare PyBullet scene (plane.urdf, 8 boxes, a box robot,
  24 physics steps at 240 Hz and one 64x64 TinyRenderer frame per 10 Hz step) with none of the
  env's randomization, noise, planner or info.
- `step_breakdown`: exclusive time per part of a step (render, drive = physics, noise,
  geodesic, reset, other), by timing the env's own methods.
- `interleaved_rates`: steps/s of several step functions timed in alternating blocks, so that
  all see the same background load (this is a shared 2-core machine: only ratios are steady).
- `geometry_variants`: render-only fps of each `Geometry` over the same scenes and views.
- `contact_agreement`: one control step from the same saved states, driven by a reference
  (velocity set and contacts read at every 60 Hz solver step, the first release's loop) and by
  the env's drive (one velocity per period, `substeps` solver steps in one call) per physics
  rate: how often the collision flag agrees and how far the end poses differ.

The renderer comparisons (fill rates, EGL on llvmpipe, the gap to Miniworld) are in
`eval.bench_render`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pybullet as p
import pybullet_data
from pybullet_utils import bullet_client

from envs.config import EnvConfig, ObservationConfig, RandomizationConfig
from envs.nav_env import CameraNavEnv
from envs.quiet import quiet_stdout
from envs.randomize import sample_values
from envs.scene import FAST, LEGACY, Camera, Geometry, build_scene
from policies.oracle import Oracle

ACTION_CYCLE = (0, 0, 1, 0, 2, 3, 0, 4)
"""Discrete actions driven in turn: mostly forward, with arcs and turns, so the robot roams."""
PARTS = ("render", "drive", "noise", "geodesic", "reset", "other")
_TIMED_METHODS = {"_render": "render", "_drive": "drive", "_image_noise": "noise",
                  "_geodesic_at": "geodesic", "reset": "reset"}

GEOMETRY_VARIANTS: dict[str, Geometry] = {
    "first release (box floor and walls, 124-triangle cylinders, robot drawn)": LEGACY,
    "chosen (quad floor, 4-tile walls, 16-sided cylinders, robot hidden)": FAST,
    "floor as a box": replace(FAST, floor="box"),
    "floor tiled 4x4": replace(FAST, floor="tiles", floor_tiles=4),
    "floor tiled 8x8": replace(FAST, floor="tiles", floor_tiles=8),
    "walls as boxes": replace(FAST, walls="box"),
    "walls as single quads": replace(FAST, walls="quad"),
    "walls in 8 tiles": replace(FAST, wall_tiles=8),
    "walls in 16 tiles": replace(FAST, wall_tiles=16),
    "PyBullet cylinders": replace(FAST, cylinder_sides=0),
    "robot drawn in its own camera": replace(FAST, robot_visible=True),
    "floor and walls first": replace(FAST, occluders_first=False),
}
NO_TEXTURES = "chosen, textures off (what the texture factor costs)"
DRIVERS = ("goal-directed (privileged planner)", "action cycle (into walls often)")


def _env(resolution: int = 64, geometry: Geometry = FAST, **config: Any) -> CameraNavEnv:
    obs = ObservationConfig(width=resolution, height=resolution)
    return CameraNavEnv(EnvConfig(observation=obs, **config), geometry=geometry)


def _untextured() -> dict[str, Any]:
    return {"randomization": RandomizationConfig(texture_contrast=(0.0, 0.0))}


Reset = Callable[[CameraNavEnv, dict], Any]
"""A hook run after every reset with the env and the reset's info."""


class EnvRunner:
    """Steps an env through the action cycle, resetting when an episode ends (resets count:
    a trainer pays for them too); `on_reset` runs after each reset."""

    def __init__(self, env: CameraNavEnv, seed: int, on_reset: Reset | None = None):
        self.env, self.t, self.on_reset, self.resets = env, 0, on_reset, 0
        self._reset(seed)

    def _reset(self, seed: int | None) -> None:
        _, info = self.env.reset(seed=seed)
        self.resets += 1
        if self.on_reset is not None:
            self.on_reset(self.env, info)

    def __call__(self, steps: int) -> None:
        env = self.env
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(ACTION_CYCLE[self.t % len(ACTION_CYCLE)])
            self.t += 1
            if terminated or truncated:
                self._reset(None)


class RenderOnly:
    """Renders the env's camera at the pose the env is in: the bound a step cannot beat."""

    def __init__(self, env: CameraNavEnv):
        self.env = env

    def __call__(self, frames: int) -> None:
        env = self.env
        eye, target = env._camera_pose()
        for _ in range(frames):
            env._camera.render(eye, target)


def mid_camera() -> dict[str, float]:
    """The env's camera at randomization strength 0, where each range sits at its anchor, the
    middle for the camera's (height m, pitch and field of view in degrees): the camera the bare
    scene renders from, so the two see alike."""
    # strength 0 scales every draw to nothing: each factor is its anchor, whatever the seed
    values = sample_values(np.random.default_rng(0), RandomizationConfig(), 0.0)
    return {"height_m": values["camera_height_m"], "pitch_deg": values["camera_pitch_deg"],
            "fov_deg": values["camera_fov_deg"]}


class BareScene:
    """The reference scene: plane.urdf, 8 static boxes, a 1 kg box robot driven by setting its
    velocity once per 10 Hz step, 24 physics steps at 240 Hz (no gravity: like the env, the
    robot glides 1 mm above the plane and touches only the boxes), and one TinyRenderer frame
    from a camera on the robot (the env's mid camera, `mid_camera`). Reset every 200 steps."""

    SUBSTEPS = 24
    EPISODE = 200

    def __init__(self, resolution: int = 64, seed: int = 0):
        self.resolution, self.t = resolution, 0
        with quiet_stdout():
            self.cid = p.connect(p.DIRECT)
        cid = self.cid
        p.setGravity(0, 0, 0, physicsClientId=cid)
        p.setTimeStep(1.0 / 240.0, physicsClientId=cid)
        p.loadURDF(os.path.join(pybullet_data.getDataPath(), "plane.urdf"), physicsClientId=cid)
        rng = np.random.default_rng(seed)
        box = p.createCollisionShape(p.GEOM_BOX, halfExtents=[0.2, 0.2, 0.2], physicsClientId=cid)
        look = p.createVisualShape(p.GEOM_BOX, halfExtents=[0.2, 0.2, 0.2],
                                   rgbaColor=[0.8, 0.5, 0.2, 1], physicsClientId=cid)
        for x, y in rng.uniform(0.6, 2.0, (8, 2)) * rng.choice([-1, 1], (8, 2)):
            p.createMultiBody(0, box, look, [x, y, 0.2], physicsClientId=cid)
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[0.15, 0.1, 0.05],
                                     physicsClientId=cid)
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[0.15, 0.1, 0.05],
                                  rgbaColor=[0.2, 0.3, 0.9, 1], physicsClientId=cid)
        self.robot = p.createMultiBody(1.0, col, vis, [0, 0, 0.051], physicsClientId=cid)
        self.camera = mid_camera()
        self.proj = p.computeProjectionMatrixFOV(self.camera["fov_deg"], 1.0, 0.02, 12.0,
                                                 physicsClientId=cid)

    def describe(self) -> str:
        """The docstring with the camera's values filled in."""
        cam = self.camera
        return " ".join(self.__doc__.split()).replace(
            "the env's mid camera, `mid_camera`",
            f"the env's mid camera: {cam['height_m']:g} m high, pitched {-cam['pitch_deg']:g} "
            f"degrees down, {cam['fov_deg']:g} degree field of view")

    def reset(self) -> None:
        p.resetBasePositionAndOrientation(self.robot, [0, 0, 0.051], [0, 0, 0, 1],
                                          physicsClientId=self.cid)

    def frame(self) -> np.ndarray:
        (x, y, _), orn = p.getBasePositionAndOrientation(self.robot, physicsClientId=self.cid)
        yaw = p.getEulerFromQuaternion(orn)[2]
        down = math.sin(math.radians(self.camera["pitch_deg"]))
        c, s = math.cos(yaw), math.sin(yaw)
        eye = [x + 0.15 * c, y + 0.15 * s, self.camera["height_m"]]
        view = p.computeViewMatrix(eye, [eye[0] + c, eye[1] + s, eye[2] + down], [0, 0, 1],
                                   physicsClientId=self.cid)
        n = self.resolution
        return p.getCameraImage(n, n, view, self.proj, renderer=p.ER_TINY_RENDERER,
                                flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=self.cid)[2]

    def __call__(self, steps: int) -> None:
        cid, robot = self.cid, self.robot
        for _ in range(steps):
            action = ACTION_CYCLE[self.t % len(ACTION_CYCLE)]
            self.t += 1
            if self.t % self.EPISODE == 0:
                self.reset()
            _, orn = p.getBasePositionAndOrientation(robot, physicsClientId=cid)
            yaw = p.getEulerFromQuaternion(orn)[2]
            v, w = (0.5, 0.0) if action == 0 else (0.3, 1.0) if action < 3 else (0.0, 1.6)
            p.resetBaseVelocity(robot, [v * math.cos(yaw), v * math.sin(yaw), 0], [0, 0, w],
                                physicsClientId=cid)
            for _ in range(self.SUBSTEPS):
                p.stepSimulation(physicsClientId=cid)
            self.frame()

    def close(self) -> None:
        p.disconnect(self.cid)


def interleaved_rates(runners: dict[str, Callable[[int], None]], steps: int, rounds: int,
                      warmup: int = 30) -> dict[str, float]:
    """Calls per second of each runner, timed in `rounds` alternating blocks of
    `steps // rounds` calls."""
    for run in runners.values():
        run(warmup)
    block = max(1, steps // rounds)
    seconds = dict.fromkeys(runners, 0.0)
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run(block)
            seconds[name] += time.perf_counter() - start
    return {name: block * rounds / s for name, s in seconds.items()}


class _PartTimer:
    """Exclusive seconds per part: a timed call nested in another (a render inside a reset)
    is charged to its own part only."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self._stack: list[float] = []

    def wrap(self, fn: Callable, part: str) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(0.0)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self._stack.pop()
                self.seconds[part] += elapsed - inner
                if self._stack:
                    self._stack[-1] += elapsed
        return timed


def step_breakdown(env: CameraNavEnv, steps: int, seed: int) -> dict[str, Any]:
    """Milliseconds per step of each part over `steps` steps of the action cycle (resets
    included), and the share of the step spent outside the renderer, with and without the
    resets' world rebuilds (their renders stay in)."""
    timer = _PartTimer()
    for name, part in _TIMED_METHODS.items():
        setattr(env, name, timer.wrap(getattr(env, name), part))
    runner = EnvRunner(env, seed)
    runner(30)
    timer.seconds = dict.fromkeys(PARTS, 0.0)
    resets = runner.resets
    start = time.perf_counter()
    runner(steps)
    total = time.perf_counter() - start
    for name in _TIMED_METHODS:
        delattr(env, name)
    timer.seconds["other"] = total - sum(timer.seconds.values())
    ms = {part: round(1e3 * s / steps, 4) for part, s in timer.seconds.items()}
    render, rebuild = timer.seconds["render"], timer.seconds["reset"]
    return {"steps": steps, "resets": runner.resets - resets,
            "step_ms": round(1e3 * total / steps, 4), "parts_ms": ms,
            "non_render_fraction": round(1 - render / total, 4),
            "non_render_fraction_without_rebuilds": round(1 - render / (total - rebuild), 4)}


def _views(driver: str, episodes: int, steps: int, seed: int) -> list[tuple[Any, list]]:
    """(scene, camera poses) of `episodes` episodes driven by `driver` (one of DRIVERS)."""
    env, views = _env(16), []
    try:
        for ep in range(episodes):
            _, info = env.reset(seed=seed + ep)
            planner = Oracle()
            planner.reset(info)
            poses = []
            for t in range(steps):
                action = planner.act(info) if driver == DRIVERS[0] else ACTION_CYCLE[t % 8]
                _, _, terminated, truncated, info = env.step(action)
                poses.append(env._camera_pose())
                if terminated or truncated:
                    break
            views.append((env.scene, poses))
    finally:
        env.close()
    return views


def geometry_variants(episodes: int, reps: int, seed: int) -> list[dict[str, Any]]:
    """Render-only fps at 64x64 of each world build in GEOMETRY_VARIANTS, and of the chosen
    one without textures, over the same scenes and camera poses for every build (goal-directed
    driving and the action cycle): each scene is built and its poses rendered per build in a
    shuffled order, `reps` times, so load bursts land on all builds alike. Ratios are to the
    chosen build."""
    builds = {**{name: (g, False) for name, g in GEOMETRY_VARIANTS.items()},
              NO_TEXTURES: (FAST, True)}
    with quiet_stdout():
        client = bullet_client.BulletClient(connection_mode=p.DIRECT)
    cid = client._client
    shuffle = np.random.default_rng(seed)
    rows = {name: {"variant": name} for name in builds}
    try:
        for driver in DRIVERS:
            seconds, frames = dict.fromkeys(builds, 0.0), dict.fromkeys(builds, 0)
            views = _views(driver, episodes, 60, seed)
            for _ in range(reps):
                for scene, poses in views:
                    for name in shuffle.permutation(list(builds)):
                        geometry, bare = builds[name]
                        shown = replace(scene, floor_texture=None, wall_texture=None,
                                        obstacle_texture=None) if bare else scene
                        build_scene(client, shown, 2.0, 0.12, geometry)
                        camera = Camera(cid, 64, 64, scene.values["camera_fov_deg"], shown)
                        camera.render(*poses[0])
                        start = time.perf_counter()
                        for pose in poses:
                            camera.render(*pose)
                        seconds[name] += time.perf_counter() - start
                        frames[name] += len(poses)
            chosen = frames[_CHOSEN] / seconds[_CHOSEN]
            for name in builds:
                fps = frames[name] / seconds[name]
                rows[name][f"render_fps|{driver}"] = round(fps, 1)
                rows[name][f"vs_chosen|{driver}"] = round(fps / chosen, 3)
    finally:
        client.disconnect()
    return list(rows.values())


_CHOSEN = next(name for name, g in GEOMETRY_VARIANTS.items() if g == FAST)


# ------------------------------------------------------------------------- contacts


def _reference_drive(env: CameraNavEnv, linear: float, angular: float) -> tuple[bool, tuple]:
    """The first release's loop: at every 60 Hz solver step the motor lag is applied, the
    velocity set along the current heading, the world stepped and contacts read."""
    cid, robot = env._cid, env.bodies.robot
    dt = 1.0 / 60.0
    values = env.scene.values
    tau = 0.08 * values["mass_kg"] / values["motor_strength"]
    alpha = 1.0 - math.exp(-dt / tau)
    tv, tw = linear * env._gain, angular * env._gain
    v, w = env._velocity
    p.setPhysicsEngineParameter(fixedTimeStep=dt, numSubSteps=1, physicsClientId=cid)
    collided, yaw = False, env._heading
    for _ in range(int(round(env._period / dt))):
        v, w = v + alpha * (tv - v), w + alpha * (tw - w)
        p.resetBaseVelocity(robot, [v * math.cos(yaw), v * math.sin(yaw), 0], [0, 0, w],
                            physicsClientId=cid)
        p.stepSimulation(physicsClientId=cid)
        collided = collided or bool(p.getContactPoints(bodyA=robot, physicsClientId=cid))
        yaw = env._read_pose()[2]
    return collided, env._read_pose()


def _penetration_mm(env: CameraNavEnv) -> float:
    points = p.getContactPoints(bodyA=env.bodies.robot, physicsClientId=env._cid)
    return max([0.0] + [-1e3 * pt[8] for pt in points])


def _use_rate(env: CameraNavEnv, hz: float) -> None:
    """Switch the env's drive to `hz` solver steps per second (mid-episode, for comparisons)."""
    env.cfg = replace(env.cfg, physics_hz=float(hz))
    env._prepare_motor(env.scene.values)
    p.setPhysicsEngineParameter(fixedTimeStep=env._period, numSubSteps=env.cfg.substeps,
                                physicsClientId=env._cid)


def contact_agreement(rates_hz: tuple[int, ...] = (60, 30, 20, 10), episodes: int = 6,
                      steps: int = 60, seed: int = 0) -> dict[str, Any]:
    """One control step from the same pose and velocity, driven by the reference (the first
    release's world and loop: cylinder robot, velocity set and contacts read at every 60 Hz
    solver step) and by the env's drive at each physics rate, over random-action rollouts
    that often hit walls and obstacles (the env and the reference share each episode's
    world draw).

    Per rate: agreement of the collision flag with the reference, collision rate, mean and
    max end-position difference (mm), mean penetration when in contact (mm)."""
    env, ref = _env(16), _env(16, LEGACY)
    own_hz = env.cfg.physics_hz
    rng = np.random.default_rng(seed)
    stats = {hz: {"agree": 0, "collided": 0, "dist": [], "depth": []} for hz in rates_hz}
    reference = {"collided": 0, "depth": []}
    samples = 0
    try:
        for ep in range(episodes):
            env.reset(seed=seed + ep)
            ref.reset(seed=seed + ep)
            for _ in range(steps):
                linear, angular = env._command_from_action(int(rng.choice([0, 0, 0, 1, 2, 3, 4])))
                kept = (env._x, env._y, env._heading, env._velocity)
                ref._set_pose(*kept[:3])
                ref._velocity = kept[3]
                ref_hit, ref_pose = _reference_drive(ref, linear, angular)
                reference["collided"] += ref_hit
                if ref_hit:
                    reference["depth"].append(_penetration_mm(ref))
                state = p.saveState(physicsClientId=env._cid)
                for hz in rates_hz:
                    p.restoreState(state, physicsClientId=env._cid)
                    env._x, env._y, env._heading, env._velocity = kept
                    _use_rate(env, hz)
                    hit = env._drive(linear, angular)
                    s = stats[hz]
                    s["agree"] += hit == ref_hit
                    s["collided"] += hit
                    s["dist"].append(1e3 * math.hypot(env._x - ref_pose[0], env._y - ref_pose[1]))
                    if hit:
                        s["depth"].append(_penetration_mm(env))
                # the rollout goes on from the env's own rate
                p.restoreState(state, physicsClientId=env._cid)
                env._x, env._y, env._heading, env._velocity = kept
                _use_rate(env, own_hz)
                env._drive(linear, angular)
                p.removeState(state, physicsClientId=env._cid)
                samples += 1
    finally:
        env.close()
        ref.close()

    def mean(xs: list[float]) -> float | None:
        return round(float(np.mean(xs)), 3) if xs else None

    rows = [{"physics_hz": hz, "substeps": int(round(hz / 10)),
             "flag_agreement": round(s["agree"] / samples, 4),
             "collision_rate": round(s["collided"] / samples, 4),
             "mean_position_diff_mm": mean(s["dist"]),
             "max_position_diff_mm": round(max(s["dist"]), 3),
             "mean_penetration_mm": mean(s["depth"])} for hz, s in stats.items()]
    return {"samples": samples, "reference": {
        "drive": "first release: cylinder robot, velocity set and contacts read at every "
                 "60 Hz solver step",
        "collision_rate": round(reference["collided"] / samples, 4),
        "mean_penetration_mm": mean(reference["depth"])}, "rates": rows}
