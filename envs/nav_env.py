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
from envs.grid import geodesic_distance, heading_error, next_waypoint
from envs.imaging import ImageNoise, draw_topdown_marks
from envs.quiet import quiet_stdout as _quiet_stdout
from envs.randomize import SceneParams, sample_scene
from envs.scene import ROBOT_Z_M, WORLD_BUILDS, Camera, Geometry, build_scene, show_robot
from envs.visibility import beacon_sight_points

# (linear, angular) as fractions of the top speeds; index = discrete action.
DISCRETE_ACTIONS = np.array([
    [1.0, 0.0],    # 0 forward
    [0.6, 0.6],    # 1 forward-left
    [0.6, -0.6],   # 2 forward-right
    [0.0, 1.0],    # 3 turn left in place
    [0.0, -1.0],   # 4 turn right in place
])
ACTION_NAMES = ("forward", "forward-left", "forward-right", "turn-left", "turn-right")
_ACTION_FRACTIONS = tuple(tuple(float(v) for v in row) for row in DISCRETE_ACTIONS)


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
    v0: first release. Later in v0 the world was rebuilt for speed (a single-sided floor quad
    and tiled walls, 16-sided cylinders, the robot hidden from its own camera and colliding as
    a sphere with the cylinder's footprint) and a control period's physics steps run in one
    call: the same factors, ranges, splits and contacts; different pixels.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: EnvConfig | dict | None = None, render_mode: str | None = None,
                 continuous: bool = False, render_size: int = 256,
                 geometry: Geometry | None = None):
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
        # an explicit geometry (benchmarks of build variants) overrides the config's build
        self.geometry = geometry or WORLD_BUILDS[config.world_build]
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
        self._period = 1.0 / config.control_hz
        self._top_speeds = (config.max_linear_mps, config.max_angular_rps)
        self.scene: SceneParams | None = None

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        cfg, rng = self.cfg, self.np_random
        self.scene, self.grid, self.field = sample_scene(
            rng, cfg, options.get("strength"), options.get("split"))
        values = self.scene.values
        self.bodies = build_scene(self._client, self.scene, cfg.arena_half_size_m,
                                  cfg.robot_radius_m, self.geometry,
                                  robot_drawn=self.render_mode is not None,
                                  camera_mount_m=cfg.observation.camera_mount_m)
        # one stepSimulation call runs the control period's `substeps` solver steps
        p.setPhysicsEngineParameter(fixedTimeStep=self._period, numSubSteps=cfg.substeps,
                                    physicsClientId=self._cid)
        obs = cfg.observation
        self._camera = Camera(self._cid, obs.width, obs.height, values["camera_fov_deg"],
                              self.scene, segmentation=obs.segmentation)
        self._prepare_motor(values)
        self._noise = ImageNoise(rng, obs.height, obs.width, values["contrast"],
                                 values["brightness"], values["image_noise_std"])
        # per-step random draws of the episode, taken in one call each and kept as Python
        # floats (a Generator call, or unpacking numpy scalars, costs more than the
        # arithmetic it feeds): blur chance and noise crop per frame, action noise per step
        self._frame_draws = rng.random((cfg.max_steps + 1, 3)).tolist()
        self._action_noise = ((values["action_noise"] * rng.standard_normal(
            (cfg.max_steps, 2))).tolist() if values["action_noise"] > 0 else None)
        x, y = self.scene.start_xy
        self._set_pose(float(x), float(y), float(self.scene.start_yaw))
        self._velocity = (0.0, 0.0)  # achieved (linear m/s, angular rad/s)
        self._command = (0.0, 0.0)   # last commanded, after noise and latency
        latency = int(round(values["action_latency_steps"]))
        self._pending = deque([(0.0, 0.0)] * latency)
        self._goal_xy = (float(self.scene.goal_xy[0]), float(self.scene.goal_xy[1]))
        self._steps = 0
        self._collisions = 0
        self._path_length = 0.0
        self._trajectory = [(self._x, self._y)]
        self._geodesic = geodesic_distance(self.grid, self.field, np.array([x, y]))
        # SPL's l_i: the shortest path ends on the success disk, not at the goal's centre
        self._shortest = max(0.0, self._geodesic - cfg.goal_radius_m)
        self._success = False
        info = self._info(collided=False, terms={})
        info["scene"] = self.scene.summary()
        info.update(occupancy=self.grid.free.copy(), grid_half_size_m=self.grid.half_size_m,
                    grid_resolution_m=self.grid.resolution_m)
        return self._observe(), info

    def step(self, action):
        if self.scene is None:
            raise RuntimeError("call reset() before step()")
        linear, angular = self._command_from_action(action)
        x0, y0 = self._x, self._y
        collided = self._drive(linear, angular)
        x, y = self._x, self._y
        self._steps += 1
        self._path_length += math.hypot(x - x0, y - y0)
        self._trajectory.append((x, y))
        self._collisions += collided
        geodesic = self._geodesic_at(x, y)
        finite = math.isfinite(geodesic)
        progress = self._geodesic - geodesic if finite else 0.0
        if finite:
            self._geodesic = geodesic
        euclid = math.hypot(x - self._goal_xy[0], y - self._goal_xy[1])
        self._success = is_success(euclid, self.cfg.goal_radius_m)
        terms = reward_terms(self.cfg, progress, self._success, collided)
        terminated = is_terminated(self._success, collided, self.cfg.terminate_on_collision)
        truncated = not terminated and self._steps >= self.cfg.max_steps
        info = self._info(collided, terms, euclid)
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

    def _prepare_motor(self, values: dict[str, float]) -> None:
        """Constants of the first-order motor response for this episode's physics draw."""
        n = self.cfg.substeps
        tau = 0.08 * values["mass_kg"] / values["motor_strength"]
        decay = math.exp(-self._period / n / tau)  # per solver step: v += (1 - decay)(t - v)
        self._gain = values["motor_strength"] * min(1.0, values["friction"])
        self._end_decay = decay ** n
        # mean of t + (v0 - t) decay^k over the steps k = 1..n
        self._mean_decay = decay * (1.0 - decay ** n) / (n * (1.0 - decay))

    def _read_pose(self) -> tuple[float, float, float]:
        """(x, y, yaw) of the base, read from the simulator."""
        pos, (qx, qy, qz, qw) = p.getBasePositionAndOrientation(self.bodies.robot,
                                                                 physicsClientId=self._cid)
        yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        return pos[0], pos[1], yaw

    def _xy(self) -> np.ndarray:
        return np.array([self._x, self._y])

    def _yaw(self) -> float:
        return self._heading

    def _set_pose(self, x: float, y: float, yaw: float) -> None:
        orn = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
        p.resetBasePositionAndOrientation(self.bodies.robot, (x, y, ROBOT_Z_M), orn,
                                          physicsClientId=self._cid)
        self._x, self._y, self._heading = x, y, yaw

    def _command_from_action(self, action) -> tuple[float, float]:
        """Action -> (linear m/s, angular rad/s) after action noise and latency."""
        if self.continuous:
            lin, ang = np.asarray(action, dtype=np.float64).reshape(2).tolist()
            lin, ang = min(max(lin, -1.0), 1.0), min(max(ang, -1.0), 1.0)
        else:
            index = int(action)
            if not 0 <= index < len(DISCRETE_ACTIONS):
                raise ValueError(f"action {action!r} is outside Discrete(5)")
            lin, ang = _ACTION_FRACTIONS[index]
        linear, angular = lin * self._top_speeds[0], ang * self._top_speeds[1]
        if self._action_noise is not None:
            n_lin, n_ang = self._action_noise[self._steps % len(self._action_noise)]
            linear, angular = linear * (1.0 + n_lin), angular * (1.0 + n_ang)
        self._pending.append((linear, angular))
        self._command = self._pending.popleft()
        return self._command

    def _drive(self, linear: float, angular: float) -> bool:
        """Advance the physics one control period; True if the robot touches a wall/obstacle
        at its end.

        The base follows the commanded (v, w) through a first-order motor response (time
        constant from mass / motor strength, one update per solver step) scaled by traction.
        The period's mean velocity is set once, along the chord of the arc it drives, and the
        solver's `substeps` steps run in one call and resolve contacts with walls and
        obstacles on the way.
        """
        tv, tw = linear * self._gain, angular * self._gain
        v0, w0 = self._velocity
        v = tv + (v0 - tv) * self._mean_decay
        w = tw + (w0 - tw) * self._mean_decay
        self._velocity = (tv + (v0 - tv) * self._end_decay, tw + (w0 - tw) * self._end_decay)
        half_turn = 0.5 * w * self._period
        chord = v * (math.sin(half_turn) / half_turn if half_turn else 1.0)
        heading = self._heading + half_turn
        robot, cid = self.bodies.robot, self._cid
        p.resetBaseVelocity(robot, (chord * math.cos(heading), chord * math.sin(heading), 0.0),
                            (0.0, 0.0, w), physicsClientId=cid)
        p.stepSimulation(physicsClientId=cid)
        collided = bool(p.getContactPoints(bodyA=robot, physicsClientId=cid))
        (x, y, z), (qx, qy, qz, qw) = p.getBasePositionAndOrientation(robot,
                                                                     physicsClientId=cid)
        yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        if collided or qx or qy or z != ROBOT_Z_M:
            # keep the base planar: contacts may tip it or lift it by a hair
            self._set_pose(x, y, yaw)
        else:
            self._x, self._y, self._heading = x, y, yaw
        return collided

    def _geodesic_at(self, x: float, y: float) -> float:
        return geodesic_distance(self.grid, self.field, (x, y))

    # ------------------------------------------------------------------ sensing

    def _camera_pose(self) -> tuple[tuple, tuple]:
        """Camera on the mast (`ObservationConfig.camera_mount_m` ahead of the base centre),
        looking forward (pitched)."""
        values = self.scene.values
        c, s = math.cos(self._heading), math.sin(self._heading)
        ahead = self.cfg.observation.camera_mount_m
        eye = (self._x + c * ahead, self._y + s * ahead, values["camera_height_m"])
        pitch = math.radians(values["camera_pitch_deg"])
        target = (eye[0] + c * math.cos(pitch), eye[1] + s * math.cos(pitch),
                  eye[2] + math.sin(pitch))
        return eye, target

    def _render(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The onboard camera's raw frame: (RGBA, depth buffer, segmentation or None)."""
        return self._camera.render(*self._camera_pose())

    def _image(self) -> np.ndarray:
        obs = self.cfg.observation
        rgba, depth, seg = self._render()
        if obs.camera and not (obs.depth or obs.segmentation):
            return self._image_noise(rgba)
        channels = []
        if obs.camera:
            channels.append(self._image_noise(rgba))
        if obs.depth:
            depth_m = self._camera.depth_m(depth)
            depth_u8 = np.clip(depth_m / obs.depth_max_m * 255.0, 0, 255).astype(np.uint8)
            channels.append(depth_u8[..., None])
        if obs.segmentation:
            channels.append(self._semantic(seg)[..., None])
        return np.concatenate(channels, axis=2)

    def _image_noise(self, rgba: np.ndarray) -> np.ndarray:
        """Camera imperfections (`envs.imaging.ImageNoise`): HxWx4 render -> HxWx3 uint8."""
        blur_draw, crop_y, crop_x = self._frame_draws[self._steps % len(self._frame_draws)]
        return self._noise.apply(rgba, blur_draw < self.scene.values["blur_probability"],
                                 crop_y, crop_x)

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
        x, y, yaw = self._x, self._y, self._heading
        angles = yaw + np.linspace(0, 2 * math.pi, obs.lidar_rays, endpoint=False)
        start = np.stack([x + np.cos(angles) * self.cfg.robot_radius_m * 1.05,
                          y + np.sin(angles) * self.cfg.robot_radius_m * 1.05,
                          np.full_like(angles, 0.1)], axis=1)
        end = start.copy()
        end[:, 0] += np.cos(angles) * obs.lidar_range_m
        end[:, 1] += np.sin(angles) * obs.lidar_range_m
        hits = self._client.rayTestBatch(start.tolist(), end.tolist())
        return np.array([h[2] * obs.lidar_range_m for h in hits], dtype=np.float32)

    def contact_bearing_deg(self) -> float | None:
        """Where the robot touches a wall or obstacle now: the bearing (degrees, counter-
        clockwise from its heading, in [-180, 180)) of its deepest contact point; None when it
        touches nothing. `step` never calls it; evaluation asks at an episode's first contact."""
        points = p.getContactPoints(bodyA=self.bodies.robot, physicsClientId=self._cid)
        if not points:
            return None
        deepest = min(points, key=lambda point: point[8])  # contactDistance: most negative
        x, y, _ = deepest[5]  # positionOnA, on the robot's body
        pose = np.array([self._x, self._y, self._heading])
        return math.degrees(heading_error(pose, np.array([x, y])))

    def goal_in_view(self) -> bool:
        """Whether the goal beacon shows in the camera image now (geometry, no rendering).

        Rays from the camera to the beacon's points inside the frustum
        (`envs.visibility.beacon_sight_points`) are cast against walls and obstacles; the
        beacon is in view when any arrives. `step` never calls it, so training pays nothing;
        evaluation asks once per step.
        """
        values, obs = self.scene.values, self.cfg.observation
        eye, target = self._camera_pose()
        points = beacon_sight_points(eye, target, self._heading, self._goal_xy,
                                     values["goal_height_m"], values["beacon_radius_m"],
                                     values["camera_fov_deg"], obs.width / obs.height)
        if not points:
            return False
        # the beacon has no collision shape, so a ray reaching it hits nothing (id -1)
        hits = p.rayTestBatch([eye] * len(points), points, numThreads=1,
                              physicsClientId=self._cid)
        return any(h[0] in (-1, self.bodies.robot) for h in hits)

    def privileged_state(self) -> np.ndarray:
        """Goal and next planner waypoint in the robot frame, and the geodesic distance.

        [goal_dist, cos, sin of goal bearing, waypoint_dist, cos, sin of waypoint bearing,
        geodesic_dist] (metres, unitless).
        """
        xy, yaw = self._xy(), self._heading
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
            parts.append(np.array([*self._command, *self._velocity], dtype=np.float32))
        if obs.privileged:
            parts.append(self.privileged_state())
        return np.concatenate(parts).astype(np.float32)

    def _observe(self):
        if self._state_size == 0:
            return self._image()
        if self._image_channels == 0:
            return self._state()
        return {"image": self._image(), "state": self._state()}

    def _info(self, collided: bool, terms: dict, distance: float | None = None
              ) -> dict[str, Any]:
        x, y = self._x, self._y
        gx, gy = self._goal_xy
        return {
            "pose": np.array([x, y, self._heading]),
            "goal": np.array([gx, gy]),
            "distance": math.hypot(gx - x, gy - y) if distance is None else distance,
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
        if not self.geometry.robot_visible:  # hidden from its own camera, shown in videos
            show_robot(self._client, self.bodies.robot, True)
        _, _, rgba, _, _ = self._client.getCameraImage(
            size, size, view, proj, renderer=p.ER_TINY_RENDERER, shadow=0,
            lightDirection=[0.3, 0.3, 1.0], lightColor=[1, 1, 1], lightDistance=5.0,
            lightAmbientCoeff=0.6, lightDiffuseCoeff=0.4, lightSpecularCoeff=0.0,
            flags=p.ER_NO_SEGMENTATION_MASK)
        if not self.geometry.robot_visible:
            show_robot(self._client, self.bodies.robot, False)
        img = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., :3].copy()
        draw_topdown_marks(img, view, proj, self.scene.goal_xy,
                           self.cfg.goal_radius_m / (2 * half) * size, self._trajectory)
        return img
