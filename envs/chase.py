"""A third-person chase camera for videos: behind and above the robot, looking along its heading.

The onboard camera sees 64x64 pixels from the robot's mast and the top-down map shows the
layout from 12 m up; neither shows the scene as a person standing behind the robot would. The
chase view does: the robot, the obstacles and the beacon in perspective, at a size a viewer can
read. It is rendered only when a video asks for it (`render_chase`, or the `ChaseRecorder`
wrapper that renders it after `reset` and every `step`), never by `CameraNavEnv.step`, so
training pays nothing for it.

It goes through the env's own pybullet client with TinyRenderer, the renderer the env already
uses. TinyRenderer keeps light and shadow settings from one call to the next, so every call
passes all of them: the onboard camera and the top-down view do the same, and the three
renders cannot leak settings into each other. Under the fast world geometry the robot's body
is transparent (the onboard camera never sees it); the chase view shows it for its own render
and hides it again afterwards, as the top-down view does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet as p

from envs.scene import NEAR_M, show_robot


@dataclass(frozen=True)
class ChaseCamera:
    """Where the chase camera sits relative to the robot, and what it renders."""

    width_px: int = 320
    """Image width (px); 5:4 with the default height, wider than the square map beside it."""
    height_px: int = 256
    """Image height (px): the top-down map's default size, so the panels line up."""
    back_m: float = 1.0
    """Horizontal distance of the eye behind the robot's centre, along its heading."""
    eye_height_m: float = 1.1
    """Eye height above the floor: above the tallest obstacle (0.6 m at most), so one
    standing right behind the robot hides it only partly."""
    ahead_m: float = 0.9
    """The view centre lies this far ahead of the robot, so the robot sits in the lower
    half of the image and the way ahead (where the beacon usually is) fills the rest."""
    target_height_m: float = 0.1
    """Height of the view centre above the floor."""
    fov_deg: float = 65.0
    """Vertical field of view."""
    far_m: float = 12.0
    """Far clipping plane: past the far corner of the largest arena."""

    def __post_init__(self) -> None:
        if self.width_px < 16 or self.height_px < 16:
            raise ValueError(f"chase camera size must be at least 16x16 px, got "
                             f"{self.width_px}x{self.height_px}")
        if not 1.0 <= self.fov_deg <= 170.0:
            raise ValueError(f"chase camera fov_deg must be in [1, 170], got {self.fov_deg}")


CHASE = ChaseCamera()
"""The chase camera of recorded videos."""

# Fixed, even lighting: the episode's randomized light is what the onboard camera had to cope
# with; the viewer's camera should show the scene plainly (colours and textures still vary).
_LIGHT = dict(lightDirection=[0.4, -0.3, 1.0], lightColor=[1.0, 1.0, 1.0], lightDistance=5.0,
              lightAmbientCoeff=0.55, lightDiffuseCoeff=0.5, lightSpecularCoeff=0.05)


def chase_pose(x: float, y: float, yaw: float, camera: ChaseCamera = CHASE
               ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """`(eye, target)` in world metres for a robot at `(x, y)` heading `yaw` (rad)."""
    c, s = math.cos(yaw), math.sin(yaw)
    eye = (x - c * camera.back_m, y - s * camera.back_m, camera.eye_height_m)
    target = (x + c * camera.ahead_m, y + s * camera.ahead_m, camera.target_height_m)
    return eye, target


def render_chase(env: gym.Env, camera: ChaseCamera = CHASE) -> np.ndarray:
    """The chase view of `env`'s current state: `(height_px, width_px, 3)` uint8 RGB.

    `env` is a `CameraNavEnv` (wrappers allowed) after `reset`, made with
    ``render_mode="rgb_array"`` unless its geometry draws the robot anyway: an env made for
    training builds the robot without a body to draw. Reads the simulator; changes nothing
    the env's own renders or physics depend on.
    """
    base: Any = env.unwrapped
    if getattr(base, "scene", None) is None:
        raise RuntimeError("the chase view needs an episode: call reset() first")
    hidden = not base.geometry.robot_visible
    if hidden and base.render_mode is None:
        raise ValueError("this env was built without the robot's body to draw; make it with "
                         "render_mode='rgb_array' to record videos")
    client = base._client  # the env's one pybullet client; only read and rendered here
    (x, y, _), (qx, qy, qz, qw) = client.getBasePositionAndOrientation(base.bodies.robot)
    yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
    eye, target = chase_pose(x, y, yaw, camera)
    w, h = camera.width_px, camera.height_px
    view = client.computeViewMatrix(eye, target, [0.0, 0.0, 1.0])
    proj = client.computeProjectionMatrixFOV(camera.fov_deg, w / h, NEAR_M, camera.far_m)
    if hidden:
        show_robot(client, base.bodies.robot, True)
    try:
        _, _, rgba, _, _ = client.getCameraImage(
            w, h, view, proj, renderer=p.ER_TINY_RENDERER, shadow=1,
            flags=p.ER_NO_SEGMENTATION_MASK, **_LIGHT)
    finally:
        if hidden:
            show_robot(client, base.bodies.robot, False)
    return np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[..., :3].copy()


class ChaseRecorder(gym.Wrapper):
    """Renders the chase view after `reset` and after every `step`.

    `views` holds the current episode's frames, one per observation (`steps + 1`), in the
    order a rollout keeps its camera frames; `reset` starts a new list. Observations, rewards
    and infos pass through unchanged.
    """

    def __init__(self, env: gym.Env, camera: ChaseCamera = CHASE):
        super().__init__(env)
        self.camera = camera
        self.views: list[np.ndarray] = []

    def reset(self, **kwargs: Any):
        out = self.env.reset(**kwargs)
        self.views = [render_chase(self.env, self.camera)]
        return out

    def step(self, action: Any):
        out = self.env.step(action)
        self.views.append(render_chase(self.env, self.camera))
        return out
