"""Builds one episode's PyBullet world from SceneParams, and renders its cameras.

Everything is made of primitive shapes: TinyRenderer's cost follows triangle count, and a
primitive robot keeps the 64x64 camera near the render-only bound. The world is rebuilt with
`resetSimulation` on every reset (a few ms), which frees every shape and texture of the last
episode, so memory stays flat and the solver state is fully reset (reproducible steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pybullet as p

from envs.randomize import SceneParams
from envs.textures import texture_path

WALL_HEIGHT_M = 0.35
WALL_THICKNESS_M = 0.05
ROBOT_Z_M = 0.06


@dataclass
class SceneBodies:
    """Body ids of one built world."""

    robot: int
    goal: int
    walls: list[int]
    obstacles: list[int]
    floor: int


def _rgba(rgb) -> list[float]:
    return [float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0]


def _static_body(client, shape: int, size, position, yaw: float, rgb, collide: bool = True) -> int:
    if shape == p.GEOM_BOX:
        vis_kw = col_kw = {"halfExtents": size}
    else:  # PyBullet names a cylinder's height differently for visual and collision shapes
        vis_kw, col_kw = ({"radius": size[0], "length": size[1]},
                          {"radius": size[0], "height": size[1]})
    vis = client.createVisualShape(shape, rgbaColor=_rgba(rgb), **vis_kw)
    col = client.createCollisionShape(shape, **col_kw) if collide else -1
    orn = client.getQuaternionFromEuler([0, 0, yaw])
    return client.createMultiBody(0, col, vis, position, orn)


def _robot(client, radius: float, mass: float) -> int:
    """A cylinder base with two wheels and a camera mast at the front (one rigid body)."""
    shapes = [p.GEOM_CYLINDER, p.GEOM_CYLINDER, p.GEOM_CYLINDER, p.GEOM_BOX]
    wheel = client.getQuaternionFromEuler([math.pi / 2, 0, 0])
    vis = client.createVisualShapeArray(
        shapeTypes=shapes,
        radii=[radius, 0.05, 0.05, 0],
        lengths=[0.08, 0.03, 0.03, 0],
        halfExtents=[[0, 0, 0], [0, 0, 0], [0, 0, 0], [0.02, 0.04, 0.06]],
        rgbaColors=[[0.9, 0.9, 0.92, 1], [0.1, 0.1, 0.1, 1], [0.1, 0.1, 0.1, 1],
                    [0.2, 0.3, 0.9, 1]],
        visualFramePositions=[[0, 0, 0.02], [0, radius, -0.01], [0, -radius, -0.01],
                              [radius - 0.03, 0, 0.1]],
        visualFrameOrientations=[[0, 0, 0, 1], wheel, wheel, [0, 0, 0, 1]],
    )
    col = client.createCollisionShape(p.GEOM_CYLINDER, radius=radius, height=0.1)
    return client.createMultiBody(mass, col, vis, [0, 0, ROBOT_Z_M])


def _texture(client, body: int, name: str | None, contrast: float, rgb) -> None:
    if name is not None:
        tex = client.loadTexture(texture_path(name, contrast))
        client.changeVisualShape(body, -1, textureUniqueId=tex, rgbaColor=_rgba(rgb))


def build_scene(client, scene: SceneParams, half_size_m: float,
                robot_radius_m: float) -> SceneBodies:
    """Reset the simulation and create floor, walls, obstacles, goal and robot."""
    client.resetSimulation()
    client.setGravity(0, 0, 0)
    values = scene.values
    contrast = values["texture_contrast"]
    floor = _static_body(client, p.GEOM_BOX, [half_size_m + 0.5, half_size_m + 0.5, 0.005],
                         [0, 0, -0.005], 0.0, scene.floor_rgb, collide=False)
    _texture(client, floor, scene.floor_texture, contrast, scene.floor_rgb)
    walls = []
    h, t = WALL_HEIGHT_M / 2, WALL_THICKNESS_M / 2
    for x, y, hx, hy in [(half_size_m + t, 0, t, half_size_m + 2 * t),
                         (-half_size_m - t, 0, t, half_size_m + 2 * t),
                         (0, half_size_m + t, half_size_m, t),
                         (0, -half_size_m - t, half_size_m, t)]:
        wall = _static_body(client, p.GEOM_BOX, [hx, hy, h], [x, y, h], 0.0, scene.wall_rgb)
        _texture(client, wall, scene.wall_texture, contrast, scene.wall_rgb)
        walls.append(wall)
    obstacles = []
    for ob, rgb in zip(scene.obstacles, scene.obstacle_rgb):
        z = ob.height_m / 2
        if ob.kind == "box":
            body = _static_body(client, p.GEOM_BOX, [ob.size_m, ob.size_m, z], [ob.x, ob.y, z],
                                ob.yaw, rgb)
        else:
            body = _static_body(client, p.GEOM_CYLINDER, [ob.size_m, ob.height_m],
                                [ob.x, ob.y, z], 0.0, rgb)
        _texture(client, body, scene.obstacle_texture, contrast, rgb)
        obstacles.append(body)
    goal_h = values["goal_height_m"]
    goal = _static_body(client, p.GEOM_CYLINDER, [values["beacon_radius_m"], goal_h],
                        [scene.goal_xy[0], scene.goal_xy[1], goal_h / 2], 0.0, scene.goal_rgb,
                        collide=False)
    robot = _robot(client, robot_radius_m, values["mass_kg"])
    return SceneBodies(robot, goal, walls, obstacles, floor)


def render_camera(client, width: int, height: int, eye, target, fov_deg: float,
                  scene: SceneParams, segmentation: bool = False, far_m: float = 12.0):
    """One TinyRenderer image: (rgb uint8 HxWx3, depth in metres HxW float32, seg or None)."""
    view = client.computeViewMatrix(eye, target, [0, 0, 1])
    proj = client.computeProjectionMatrixFOV(fov_deg, width / height, 0.02, far_m)
    values = scene.values
    # TinyRenderer keeps light and shadow settings between calls: pass them every time.
    flags = 0 if segmentation else p.ER_NO_SEGMENTATION_MASK
    _, _, rgba, depth, seg = client.getCameraImage(
        width, height, view, proj, renderer=p.ER_TINY_RENDERER, shadow=0,
        lightDirection=list(scene.light_direction), lightColor=list(scene.light_color),
        lightDistance=5.0, lightAmbientCoeff=values["light_ambient"],
        lightDiffuseCoeff=values["light_diffuse"], lightSpecularCoeff=values["light_specular"],
        flags=flags)
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3]
    buf = np.asarray(depth, dtype=np.float32).reshape(height, width)
    near = 0.02
    depth_m = far_m * near / (far_m - (far_m - near) * buf)
    seg_arr = np.asarray(seg, dtype=np.int32).reshape(height, width) if segmentation else None
    return rgb, depth_m, seg_arr
