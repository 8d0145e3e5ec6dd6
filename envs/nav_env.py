"""CameraNavEnv: a small differential-drive robot reaches a goal beacon from its camera alone."""

from __future__ import annotations

import contextlib
import math
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet as p
from gymnasium import spaces
from pybullet_utils import bullet_client

from envs.config import EnvConfig, from_dict
from envs.grid import geodesic_distance, next_waypoint
from envs.quiet import quiet_stdout as _quiet_stdout
from envs.randomize import SceneParams, sample_scene
from envs.scene import ROBOT_Z_M, build_scene, render_camera

# (linear, angular) as fractions of the top speeds; index = discrete action.
DISCRETE_ACTIONS = np.array([
    [1.0, 0.0],    # 0 forward
    [0.6, 0.6],    # 1 forward-left
    [0.6, -0.6],   # 2 forward-right
    [0.0, 1.0],    # 3 turn left in place
    [0.0, -1.0],   # 4 turn right in place
])
ACTION_NAMES = ("forward", "forward-left", "forward-right", "turn-left", "turn-right")

_NOISE_MARGIN = 32

# Semantic labels for the optional segmentation channel.
SEG_FLOOR, SEG_OBSTACLE, SEG_GOAL, SEG_ROBOT = 0, 85, 170, 255


def reward_terms(cfg: EnvConfig, progress_m: float, success: bool, collided: bool) -> dict:
    """The named reward terms of one control step (their sum is the reward)."""
    r = cfg.reward
    return {
        "progress": r.progress * progress_m,
        "success": r.success if success else 0.0,
        "collision": r.collision if collided else 0.0,
        "time": r.time,
    }


def is_success(euclid_m: float, goal_radius_m: float) -> bool:
    """Success: the robot centre is within `goal_radius_m` of the goal (no STOP action)."""
    return euclid_m <= goal_radius_m


def is_terminated(success: bool, collided: bool, terminate_on_collision: bool) -> bool:
    return success or (collided and terminate_on_collision)


class CameraNavEnv(gym.Env):
    """Reach a red-magenta goal beacon in a walled arena with obstacles, from the camera alone.

    ## Action Space
    `Discrete(5)`: forward, forward-left, forward-right, turn left, turn right (see
    `DISCRETE_ACTIONS`), or with `continuous=True` a `Box(-1, 1, (2,))` of (linear, angular)
    velocity as fractions of `max_linear_mps` / `max_angular_rps`.

    ## Observation Space
    Default: `Box(0, 255, (H, W, 3), uint8)`, the onboard RGB camera. Opt-ins (config
    `observation.*`) add depth/segmentation channels to the image, or lidar / proprioceptive /
    privileged vectors; with vectors the space is a `Dict` of `image` and `state` (or a plain
    vector `Box` when the camera is off, for a privileged teacher that never renders).

    ## Rewards
    Sum of named terms (`info["reward_terms"]`): geodesic progress per metre, a success bonus,
    a collision penalty per step in contact, a time cost per step.

    ## Episode End
    Terminated on success (centre within `goal_radius_m` of the goal) or, if
    `terminate_on_collision`, at the first contact. Truncated after `max_steps` control steps.

    ## Info
    `pose` (x, y, yaw), `goal` (x, y), `distance` (Euclidean m), `geodesic_distance` (m),
    `shortest_path_length` (geodesic from the start to the success disk, m), `path_length`
    (driven, m), `collisions`, `collided`, `success`, `reward_terms`, `steps`; on reset also
    `scene` (the drawn randomization values) and the planner grid (`occupancy`, `grid_half_size_m`,
    `grid_resolution_m`) for privileged controllers.

    ## Version History
    v0: first release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: EnvConfig | dict | None = None, render_mode: str | None = None,
                 continuous: bool = False, render_size: int = 256):
        if config is None:
            config = EnvConfig()
        elif isinstance(config, dict):
            config = from_dict(EnvConfig, config, "env")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use 'rgb_array'")
        self.cfg = config
        self.render_mode = render_mode
        self.continuous = continuous
        self.render_size = render_size
        self.metadata = {**self.metadata, "render_fps": int(config.control_hz)}
        obs = config.observation
        self._image_channels = obs.image_channels
        self._state_size = (obs.lidar_rays * obs.lidar + 4 * obs.proprio + 7 * obs.privileged)
        image_space = spaces.Box(0, 255, (obs.height, obs.width, self._image_channels), np.uint8)
        state_space = spaces.Box(-np.inf, np.inf, (self._state_size,), np.float32)
        if self._state_size == 0:
            self.observation_space = image_space
        elif self._image_channels == 0:
            self.observation_space = state_space
        else:
            self.observation_space = spaces.Dict({"image": image_space, "state": state_space})
        if continuous:
            self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        else:
            self.action_space = spaces.Discrete(len(DISCRETE_ACTIONS))
        with _quiet_stdout():  # the C library prints its argv on every connect
            self._client = bullet_client.BulletClient(connection_mode=p.DIRECT)
        # hot paths call pybullet directly with the client id: BulletClient's per-call
        # attribute wrapping costs more than the calls themselves
        self._cid = self._client._client
        self._dt = 1.0 / config.physics_hz
        self.scene: SceneParams | None = None

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        self.scene, self.grid, self.field = sample_scene(
            self.np_random, self.cfg, options.get("strength"), options.get("split"))
        self.bodies = build_scene(self._client, self.scene, self.cfg.arena_half_size_m,
                                  self.cfg.robot_radius_m)
        p.setTimeStep(self._dt, physicsClientId=self._cid)
        x, y = self.scene.start_xy
        self._set_pose(x, y, self.scene.start_yaw)
        self._velocity = np.zeros(2)   # achieved (linear m/s, angular rad/s)
        self._command = np.zeros(2)    # last commanded, after noise and latency
        values = self.scene.values
        levels = np.arange(256, dtype=np.float32)
        tone = (levels - 128.0) * values["contrast"] + 128.0 + values["brightness"]
        self._tone_lut = np.clip(np.round(tone), 0, 255).astype(np.uint8)
        # Per-step Gaussian noise is a random crop of one per-episode noise field: drawing
        # H*W*3 normals every step would cost more than the 64x64 render itself.
        std = values["image_noise_std"]
        obs = self.cfg.observation
        self._noise_bank = None if std <= 0 else np.round(self.np_random.standard_normal(
            (obs.height + _NOISE_MARGIN, obs.width + _NOISE_MARGIN, 3)) * std).astype(np.int16)
        latency = int(round(values["action_latency_steps"]))
        self._pending = deque([np.zeros(2)] * latency)
        self._steps = 0
        self._collisions = 0
        self._path_length = 0.0
        self._trajectory = [np.array([x, y])]
        self._geodesic = geodesic_distance(self.grid, self.field, np.array([x, y]))
        # SPL's l_i: the shortest path ends on the success disk, not at the goal's centre
        self._shortest = max(0.0, self._geodesic - self.cfg.goal_radius_m)
        self._success = False
        info = self._info(collided=False, terms={})
        info["scene"] = self.scene.summary()
        info.update(occupancy=self.grid.free.copy(), grid_half_size_m=self.grid.half_size_m,
                    grid_resolution_m=self.grid.resolution_m)
        return self._observe(), info

    def step(self, action):
        if self.scene is None:
            raise RuntimeError("call reset() before step()")
        command = self._command_from_action(action)
        before = self._xy()
        collided = self._drive(command)
        after = self._xy()
        self._steps += 1
        self._path_length += float(np.linalg.norm(after - before))
        self._trajectory.append(after)
        self._collisions += int(collided)
        geodesic = geodesic_distance(self.grid, self.field, after)
        progress = self._geodesic - geodesic if np.isfinite(geodesic) else 0.0
        self._geodesic = geodesic if np.isfinite(geodesic) else self._geodesic
        euclid = float(np.linalg.norm(after - np.asarray(self.scene.goal_xy)))
        self._success = is_success(euclid, self.cfg.goal_radius_m)
        terms = reward_terms(self.cfg, progress, self._success, collided)
        terminated = is_terminated(self._success, collided, self.cfg.terminate_on_collision)
        truncated = not terminated and self._steps >= self.cfg.max_steps
        info = self._info(collided, terms)
        return self._observe(), float(sum(terms.values())), terminated, truncated, info

    def render(self):
        """Top-down view of the arena with the trajectory so far (H = W = render_size)."""
        if self.render_mode != "rgb_array" or self.scene is None:
            return None
        return self._topdown()

    def close(self):
        if getattr(self, "_client", None) is not None:
            with contextlib.suppress(p.error):
                self._client.disconnect()
            self._client = None

    # ------------------------------------------------------------------ dynamics

    def _read_pose(self) -> np.ndarray:
        """(x, y, yaw) of the base, read from the simulator."""
        pos, (qx, qy, qz, qw) = p.getBasePositionAndOrientation(self.bodies.robot,
                                                                 physicsClientId=self._cid)
        yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        return np.array([pos[0], pos[1], yaw])

    def _xy(self) -> np.ndarray:
        return self._pose[:2].copy()

    def _yaw(self) -> float:
        return float(self._pose[2])

    def _set_pose(self, x: float, y: float, yaw: float) -> None:
        orn = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
        p.resetBasePositionAndOrientation(self.bodies.robot, [x, y, ROBOT_Z_M], orn,
                                          physicsClientId=self._cid)
        self._pose = np.array([x, y, yaw])

    def _command_from_action(self, action) -> np.ndarray:
        """Action -> (linear m/s, angular rad/s) after action noise and latency."""
        if self.continuous:
            frac = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        else:
            if not self.action_space.contains(int(action)):
                raise ValueError(f"action {action!r} is outside Discrete(5)")
            frac = DISCRETE_ACTIONS[int(action)]
        command = frac * np.array([self.cfg.max_linear_mps, self.cfg.max_angular_rps])
        noise = self.scene.values["action_noise"]
        if noise > 0:
            command = command * (1.0 + noise * self.np_random.standard_normal(2))
        self._pending.append(command)
        self._command = self._pending.popleft()
        return self._command

    def _drive(self, command: np.ndarray) -> bool:
        """Advance the physics one control period; True if the robot touched a wall/obstacle.

        The base follows the commanded (v, w) through a first-order motor response (time
        constant from mass / motor strength) scaled by traction; contacts with walls and
        obstacles are resolved by the physics solver.
        """
        values = self.scene.values
        gain = values["motor_strength"] * min(1.0, values["friction"])
        tau = 0.08 * values["mass_kg"] / values["motor_strength"]
        alpha = 1.0 - math.exp(-self._dt / tau)
        target = command * gain
        robot, cid = self.bodies.robot, self._cid
        collided = False
        yaw = self._pose[2]
        for _ in range(self.cfg.substeps):
            self._velocity += alpha * (target - self._velocity)
            v, w = self._velocity
            p.resetBaseVelocity(robot, [v * math.cos(yaw), v * math.sin(yaw), 0], [0, 0, w],
                                physicsClientId=cid)
            p.stepSimulation(physicsClientId=cid)
            if not collided and p.getContactPoints(bodyA=robot, physicsClientId=cid):
                collided = True
            yaw = self._read_pose()[2]
        # keep the base planar: contacts may tip it or lift it by a hair
        x, y, yaw = self._read_pose()
        self._set_pose(x, y, yaw)
        return collided

    # ------------------------------------------------------------------ sensing

    def _camera_pose(self):
        """Camera on the mast at the front of the base, looking forward (pitched)."""
        values = self.scene.values
        x, y = self._xy()
        yaw = self._yaw()
        forward = np.array([math.cos(yaw), math.sin(yaw)])
        ahead = self.cfg.robot_radius_m - 0.02
        eye = [x + forward[0] * ahead, y + forward[1] * ahead, values["camera_height_m"]]
        pitch = math.radians(values["camera_pitch_deg"])
        target = [eye[0] + forward[0] * math.cos(pitch), eye[1] + forward[1] * math.cos(pitch),
                  eye[2] + math.sin(pitch)]
        return eye, target

    def _image(self) -> np.ndarray:
        obs = self.cfg.observation
        eye, target = self._camera_pose()
        rgb, depth, seg = render_camera(self._client, obs.width, obs.height, eye, target,
                                        self.scene.values["camera_fov_deg"], self.scene,
                                        segmentation=obs.segmentation)
        channels = []
        if obs.camera:
            channels.append(self._image_noise(rgb))
        if obs.depth:
            depth_u8 = np.clip(depth / obs.depth_max_m * 255.0, 0, 255).astype(np.uint8)
            channels.append(depth_u8[..., None])
        if obs.segmentation:
            channels.append(self._semantic(seg)[..., None])
        return np.concatenate(channels, axis=2)

    def _image_noise(self, rgb: np.ndarray) -> np.ndarray:
        """Camera imperfections: contrast/brightness, optional 3x3 blur, Gaussian noise."""
        values, rng = self.scene.values, self.np_random
        img = np.take(self._tone_lut, rgb)
        if rng.uniform() < values["blur_probability"]:
            padded = np.pad(img.astype(np.uint16), ((1, 1), (1, 1), (0, 0)), mode="edge")
            h, w = img.shape[:2]
            img = (sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
                   // 9).astype(np.uint8)
        if self._noise_bank is not None:
            h, w = img.shape[:2]
            oy, ox = rng.integers(0, _NOISE_MARGIN + 1, size=2)
            noisy = img.astype(np.int16) + self._noise_bank[oy:oy + h, ox:ox + w]
            img = np.clip(noisy, 0, 255).astype(np.uint8)
        return img

    def _semantic(self, seg: np.ndarray) -> np.ndarray:
        body = seg & ((1 << 24) - 1)
        out = np.full(seg.shape, SEG_FLOOR, np.uint8)
        out[np.isin(body, self.bodies.walls + self.bodies.obstacles)] = SEG_OBSTACLE
        out[body == self.bodies.goal] = SEG_GOAL
        out[body == self.bodies.robot] = SEG_ROBOT
        return out

    def lidar(self) -> np.ndarray:
        """Planar lidar ranges (m), `lidar_rays` rays over 360 degrees from the base."""
        obs = self.cfg.observation
        x, y = self._xy()
        yaw = self._yaw()
        angles = yaw + np.linspace(0, 2 * math.pi, obs.lidar_rays, endpoint=False)
        start = np.stack([x + np.cos(angles) * self.cfg.robot_radius_m * 1.05,
                          y + np.sin(angles) * self.cfg.robot_radius_m * 1.05,
                          np.full_like(angles, 0.1)], axis=1)
        end = start.copy()
        end[:, 0] += np.cos(angles) * obs.lidar_range_m
        end[:, 1] += np.sin(angles) * obs.lidar_range_m
        hits = self._client.rayTestBatch(start.tolist(), end.tolist())
        return np.array([h[2] * obs.lidar_range_m for h in hits], dtype=np.float32)

    def privileged_state(self) -> np.ndarray:
        """Goal and next planner waypoint in the robot frame, and the geodesic distance.

        [goal_dist, cos, sin of goal bearing, waypoint_dist, cos, sin of waypoint bearing,
        geodesic_dist] (metres, unitless).
        """
        xy, yaw = self._xy(), self._yaw()
        waypoint = next_waypoint(self.grid, self.field, xy, lookahead_m=0.5)
        out = []
        for target in (np.asarray(self.scene.goal_xy), waypoint):
            d = target - xy
            bearing = math.atan2(d[1], d[0]) - yaw
            out += [float(np.linalg.norm(d)), math.cos(bearing), math.sin(bearing)]
        out.append(min(self._geodesic, 10.0))
        return np.array(out, dtype=np.float32)

    def _state(self) -> np.ndarray:
        obs = self.cfg.observation
        parts = []
        if obs.lidar:
            parts.append(self.lidar() / obs.lidar_range_m)
        if obs.proprio:
            parts.append(np.concatenate([self._command, self._velocity]).astype(np.float32))
        if obs.privileged:
            parts.append(self.privileged_state())
        return np.concatenate(parts).astype(np.float32)

    def _observe(self):
        if self._state_size == 0:
            return self._image()
        if self._image_channels == 0:
            return self._state()
        return {"image": self._image(), "state": self._state()}

    def _info(self, collided: bool, terms: dict) -> dict[str, Any]:
        xy = self._xy()
        goal = np.asarray(self.scene.goal_xy)
        return {
            "pose": np.array([xy[0], xy[1], self._yaw()]),
            "goal": goal.copy(),
            "distance": float(np.linalg.norm(goal - xy)),
            "geodesic_distance": float(self._geodesic),
            "shortest_path_length": float(self._shortest),
            "path_length": self._path_length,
            "collisions": self._collisions,
            "collided": collided,
            "success": self._success,
            "steps": self._steps,
            "reward_terms": terms,
        }

    # ------------------------------------------------------------------ video view

    def _topdown(self) -> np.ndarray:
        size, half = self.render_size, self.cfg.arena_half_size_m + 0.15
        height = 12.0
        fov = math.degrees(2 * math.atan(half / height))
        view = self._client.computeViewMatrix([0, 0, height], [0, 0, 0], [0, 1, 0])
        proj = self._client.computeProjectionMatrixFOV(fov, 1.0, 1.0, 20.0)
        _, _, rgba, _, _ = self._client.getCameraImage(
            size, size, view, proj, renderer=p.ER_TINY_RENDERER, shadow=0,
            lightDirection=[0.3, 0.3, 1.0], lightColor=[1, 1, 1], lightDistance=5.0,
            lightAmbientCoeff=0.6, lightDiffuseCoeff=0.4, lightSpecularCoeff=0.0,
            flags=p.ER_NO_SEGMENTATION_MASK)
        img = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., :3].copy()
        vm = np.asarray(view).reshape(4, 4, order="F")
        pm = np.asarray(proj).reshape(4, 4, order="F")

        def to_px(xy: np.ndarray, z: float = 0.0) -> np.ndarray:
            pts = np.c_[xy, np.full(len(xy), z), np.ones(len(xy))] @ (pm @ vm).T
            ndc = pts[:, :2] / pts[:, 3:4]
            return np.stack([(ndc[:, 0] + 1) / 2 * size, (1 - ndc[:, 1]) / 2 * size], axis=1)

        _draw_circle(img, to_px(np.asarray([self.scene.goal_xy]))[0],
                     self.cfg.goal_radius_m / (2 * half) * size, (255, 60, 60))
        _draw_polyline(img, to_px(np.asarray(self._trajectory)), (255, 200, 0))
        return img


def _draw_polyline(img: np.ndarray, pts: np.ndarray, colour) -> None:
    for a, b in zip(pts[:-1], pts[1:]):
        n = int(max(abs(b - a).max(), 1)) * 2
        for t in np.linspace(0, 1, n):
            x, y = (a + (b - a) * t).astype(int)
            img[max(y - 1, 0):y + 1, max(x - 1, 0):x + 1] = colour


def _draw_circle(img: np.ndarray, centre: np.ndarray, radius_px: float, colour) -> None:
    for t in np.linspace(0, 2 * math.pi, 90):
        x = int(centre[0] + radius_px * math.cos(t))
        y = int(centre[1] + radius_px * math.sin(t))
        if 0 <= x < img.shape[1] and 0 <= y < img.shape[0]:
            img[y, x] = colour
