"""Builds one episode's PyBullet world from SceneParams, and renders its cameras.

TinyRenderer's cost at 64x64 is pixel fill: every triangle walks the pixels of its screen
bounding box (about 60 ns each here, whether the triangle covers them or not), and every
triangle, on screen or not, pays a vertex stage of about 0.1 us. So the world is built for
fill rate (`Geometry`): the floor is one quad covering exactly the arena, the walls are
single-sided inward-facing tiled sheets (their collision boxes stay thick), obstacles and the
beacon are meshes without the faces that always sit on the floor, cylinders have 16 sides
instead of PyBullet's 124-triangle hull, occluders are created (and so drawn) before the floor
and walls, and the robot's own body, which the onboard camera never sees, is transparent
(TinyRenderer skips a zero-alpha shape before its vertex stage) except in the top-down view.
For the physics, every body is a plain rigid body and the robot collides as a sphere with the
cylinder's footprint (see `Geometry`; `LEGACY` rebuilds the first release's world).

The world is rebuilt with `resetSimulation` on every reset (a few ms), which frees every shape
and texture of the last episode, so memory stays flat and the solver state is fully reset.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pybullet as p

from envs.config import ObservationConfig
from envs.randomize import SceneParams
from envs.textures import texture_path

WALL_HEIGHT_M = 0.35
WALL_THICKNESS_M = 0.05
ROBOT_Z_M = 0.06
NEAR_M = 0.02
FAR_M = 12.0
# Robot visual: base, two wheels, camera mast (colours restored for the top-down view).
_ROBOT_RGBA = ((0.9, 0.9, 0.92, 1.0), (0.1, 0.1, 0.1, 1.0), (0.1, 0.1, 0.1, 1.0),
               (0.2, 0.3, 0.9, 1.0))


@dataclass(frozen=True)
class Geometry:
    """How the world is built for speed: its tessellation for the renderer and the robot's
    collision primitive. What a step costs, not what it shows or where it collides: every
    variant has the same colours, textures, sizes and contact footprint."""

    floor: str = "quad"
    """'quad' (two triangles over the arena), 'tiles' (a grid over the arena) or 'box' (a 1 cm
    box reaching 0.5 m past the walls, the first release's floor). Over the poses a robot
    drives through, tiling the floor buys nothing: the tiles near the camera are clipped and
    large anyway, and every extra triangle pays its vertex stage."""
    floor_tiles: int = 8
    """Tiles per side of the floor grid."""
    walls: str = "tiles"
    """'tiles' (inward sheets split along their length), 'quad' or 'box' (thick boxes). A wall
    seen at a grazing angle is a long wedge on screen: split, its triangles' bounding boxes
    hug it."""
    wall_tiles: int = 4
    """Tiles along each wall (1 m each): over goal-directed driving, one quad per wall renders
    25 % slower and 16 tiles 7 % slower; 4 and 8 tie, 4 is ahead near walls."""
    cylinder_sides: int = 16
    """Sides of cylinder meshes; 0 uses PyBullet's cylinder (a 124-triangle hull)."""
    mesh_boxes: bool = True
    """Box obstacles as 5-face meshes (no bottom), else PyBullet boxes."""
    robot_visible: bool = False
    """Whether the robot's body is drawn in the onboard camera (it never appears there)."""
    occluders_first: bool = True
    """Create obstacles and beacon before walls and floor, so that the hidden floor and wall
    pixels behind them fail the depth test instead of being shaded and then overdrawn."""
    robot_collision: str = "sphere"
    """'sphere' or 'cylinder' (the first release's). A sphere of the base's radius at the
    base's centre height meets every wall and obstacle (vertical, at least 8 cm tall) where
    the cylinder does, and the solver resolves it against a cylinder about 4x faster."""
    rigid_bodies: bool = True
    """Plain rigid bodies (maximal coordinates) instead of one-link btMultiBody objects: a
    free solver step costs about half."""

    def __post_init__(self) -> None:
        for name, allowed in (("floor", ("quad", "tiles", "box")),
                              ("walls", ("tiles", "quad", "box")),
                              ("robot_collision", ("sphere", "cylinder"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Geometry.{name}: {getattr(self, name)!r} is not one of "
                                 f"{', '.join(allowed)}")
        if self.floor_tiles < 1 or self.wall_tiles < 1 or not (
                self.cylinder_sides == 0 or self.cylinder_sides >= 3):
            raise ValueError("Geometry: floor_tiles and wall_tiles must be >= 1 and "
                             "cylinder_sides 0 (PyBullet's cylinder) or >= 3")


FAST = Geometry()
LEGACY = Geometry(floor="box", walls="box", cylinder_sides=0, mesh_boxes=False,
                  robot_visible=True, occluders_first=False, robot_collision="cylinder",
                  rigid_bodies=False)
"""The first release's world: thick boxes, PyBullet cylinders, the robot drawn in every frame."""
WORLD_BUILDS = {"fast": FAST, "first-release": LEGACY}
"""`EnvConfig.world_build` -> the geometry the env builds."""


@dataclass
class SceneBodies:
    """Body ids of one built world."""

    robot: int
    goal: int
    walls: list[int]
    obstacles: list[int]
    floor: int


def _rgba(rgb, alpha: float = 1.0) -> list[float]:
    return [float(rgb[0]), float(rgb[1]), float(rgb[2]), alpha]


# ----------------------------------------------------------------------------- meshes
# Meshes are (vertices, indices, uvs, normals) lists; triangles wind counter-clockwise seen
# from outside, because TinyRenderer culls the other side. A texture spans each face once, as
# on PyBullet's boxes, so textures keep the scale they had on the first release's world.


def _sheet(origin, u_axis, v_axis, nu: int, nv: int, uv0=(0.0, 0.0), uv1=(1.0, 1.0)) -> tuple:
    """A flat grid of nu x nv tiles spanning origin + [0,1] u_axis + [0,1] v_axis, facing
    u_axis x v_axis, with texture coordinates running from uv0 to uv1 across it."""
    o, u, v = (np.asarray(a, float) for a in (origin, u_axis, v_axis))
    normal = np.cross(u, v)
    normal = (normal / np.linalg.norm(normal)).tolist()
    verts, uvs = [], []
    for b in range(nv + 1):
        for a in range(nu + 1):
            verts.append((o + u * (a / nu) + v * (b / nv)).tolist())
            uvs.append([uv0[0] + (uv1[0] - uv0[0]) * a / nu, uv0[1] + (uv1[1] - uv0[1]) * b / nv])
    idx = []
    for b in range(nv):
        for a in range(nu):
            i = b * (nu + 1) + a
            idx += [i, i + 1, i + nu + 2, i, i + nu + 2, i + nu + 1]
    return verts, idx, uvs, [normal] * len(verts)


def _merge(*meshes: tuple) -> tuple:
    verts, idx, uvs, normals = [], [], [], []
    for v, i, uv, n in meshes:
        idx += [k + len(verts) for k in i]
        verts += v
        uvs += uv
        normals += n
    return verts, idx, uvs, normals


@functools.lru_cache(maxsize=16)
def floor_mesh(half: float, tiles: int) -> tuple:
    """The arena floor at z = 0, facing up; its texture placed as on the first release's floor,
    which reached 0.5 m past the walls."""
    edge = 0.5 / (2 * half + 1)
    return _sheet([-half, -half, 0], [2 * half, 0, 0], [0, 2 * half, 0], tiles, tiles,
                  (edge, edge), (1 - edge, 1 - edge))


@functools.lru_cache(maxsize=16)
def wall_mesh(half: float, height: float, tiles: int) -> tuple:
    """The four walls' inner faces (facing the arena) and their tops (facing up)."""
    t = WALL_THICKNESS_M
    corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
    faces, tops = [], []
    for k in range(4):  # corners run counter-clockwise seen from above
        (x0, y0), (x1, y1) = corners[k], corners[(k + 1) % 4]
        back = [x0 - x1, y0 - y1, 0.0]
        faces.append(_sheet([x1, y1, 0], back, [0, 0, height], tiles, 1))
        outward = [(y1 - y0) / (2 * half) * t, (x0 - x1) / (2 * half) * t, 0.0]
        tops.append(_sheet([x0, y0, height], outward, [x1 - x0, y1 - y0, 0.0], 1, tiles))
    return _merge(*faces, *tops)


@functools.lru_cache(maxsize=4)
def box_mesh(hx: float, hy: float, hz: float) -> tuple:
    """A box centred on the origin without its bottom face."""
    x, y, z = 2 * hx, 2 * hy, 2 * hz
    return _merge(
        _sheet([-hx, -hy, -hz], [x, 0, 0], [0, 0, z], 1, 1),
        _sheet([hx, -hy, -hz], [0, y, 0], [0, 0, z], 1, 1),
        _sheet([hx, hy, -hz], [-x, 0, 0], [0, 0, z], 1, 1),
        _sheet([-hx, hy, -hz], [0, -y, 0], [0, 0, z], 1, 1),
        _sheet([-hx, -hy, hz], [x, 0, 0], [0, y, 0], 1, 1))


@functools.lru_cache(maxsize=16)
def prism_mesh(radius: float, height: float, sides: int) -> tuple:
    """A cylinder centred on the origin as a `sides`-gon prism with smooth side normals and a
    top cap, without its bottom."""
    h = height / 2
    angles = [2 * math.pi * k / sides for k in range(sides + 1)]
    verts, uvs, normals, idx = [], [], [], []
    for k, a in enumerate(angles):
        c, s = math.cos(a), math.sin(a)
        verts += [[radius * c, radius * s, -h], [radius * c, radius * s, h]]
        uvs += [[k / sides, 0.0], [k / sides, 1.0]]
        normals += [[c, s, 0.0], [c, s, 0.0]]
        if k < sides:
            i = 2 * k
            idx += [i, i + 2, i + 3, i, i + 3, i + 1]
    centre = len(verts)
    verts.append([0.0, 0.0, h])
    uvs.append([0.5, 0.5])
    normals.append([0.0, 0.0, 1.0])
    for k, a in enumerate(angles):
        verts.append([radius * math.cos(a), radius * math.sin(a), h])
        uvs.append([0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a)])
        normals.append([0.0, 0.0, 1.0])
        if k < sides:
            idx += [centre, centre + 1 + k, centre + 2 + k]
    return verts, idx, uvs, normals


# ----------------------------------------------------------------------------- bodies


def _visual(client, mesh: tuple, rgb, scale=(1.0, 1.0, 1.0)) -> int:
    """A mesh visual; unit meshes are built once and scaled here (the renderer scales vertex
    positions only, so normals stay right for the axis-aligned scales used)."""
    verts, idx, uvs, normals = mesh
    return client.createVisualShape(p.GEOM_MESH, vertices=verts, indices=idx, uvs=uvs,
                                     normals=normals, rgbaColor=_rgba(rgb), meshScale=list(scale))


def _primitive_visual(client, shape: int, size, rgb) -> int:
    if shape == p.GEOM_BOX:
        return client.createVisualShape(shape, halfExtents=size, rgbaColor=_rgba(rgb))
    return client.createVisualShape(shape, radius=size[0], length=size[1], rgbaColor=_rgba(rgb))


def _collision(client, shape: int, size) -> int:
    if shape == p.GEOM_BOX:
        return client.createCollisionShape(shape, halfExtents=size)
    # PyBullet names a cylinder's height differently for visual and collision shapes
    return client.createCollisionShape(shape, radius=size[0], height=size[1])


def _body(client, col: int, vis: int, position, yaw: float = 0.0, rigid: bool = True,
          mass: float = 0.0) -> int:
    orn = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
    return client.createMultiBody(mass, col, vis, position, orn, useMaximalCoordinates=rigid)


def _robot(client, radius: float, mass: float, drawn: bool, geometry: Geometry,
           mast_m: float) -> int:
    """A cylinder base with two wheels and a camera mast `mast_m` ahead of its centre (one
    rigid body).

    Undrawn, its visual is a single transparent box: the full one costs ~3 ms per world to
    build and only the top-down view shows it (a body without any visual would be drawn with
    its collision shape)."""
    if drawn:
        wheel = client.getQuaternionFromEuler([math.pi / 2, 0, 0])
        vis = client.createVisualShapeArray(
            shapeTypes=[p.GEOM_CYLINDER, p.GEOM_CYLINDER, p.GEOM_CYLINDER, p.GEOM_BOX],
            radii=[radius, 0.05, 0.05, 0],
            lengths=[0.08, 0.03, 0.03, 0],
            halfExtents=[[0, 0, 0], [0, 0, 0], [0, 0, 0], [0.02, 0.04, 0.06]],
            rgbaColors=[list(c) for c in _ROBOT_RGBA],
            visualFramePositions=[[0, 0, 0.02], [0, radius, -0.01], [0, -radius, -0.01],
                                  [mast_m - 0.01, 0, 0.1]],
            visualFrameOrientations=[[0, 0, 0, 1], wheel, wheel, [0, 0, 0, 1]],
        )
    else:
        vis = client.createVisualShape(p.GEOM_BOX, halfExtents=[0.01] * 3,
                                       rgbaColor=[0, 0, 0, 0])
    if geometry.robot_collision == "sphere":
        col = client.createCollisionShape(p.GEOM_SPHERE, radius=radius)
    else:
        col = client.createCollisionShape(p.GEOM_CYLINDER, radius=radius, height=0.1)
    return _body(client, col, vis, [0, 0, ROBOT_Z_M], rigid=geometry.rigid_bodies, mass=mass)


def show_robot(client, robot: int, visible: bool) -> None:
    """Draw the robot's body (built with `drawn=True`) or make it transparent: the renderer
    skips a zero-alpha shape before its vertex stage."""
    for k, rgba in enumerate(_ROBOT_RGBA):
        client.changeVisualShape(robot, -1, shapeIndex=k,
                                 rgbaColor=[*rgba[:3], rgba[3] if visible else 0.0])


class _Builder:
    """Creates one world's bodies; texture files are loaded once per world."""

    def __init__(self, client, scene: SceneParams, geometry: Geometry):
        self.client, self.scene, self.geometry = client, scene, geometry
        self.contrast = scene.values["texture_contrast"]
        self.rigid = geometry.rigid_bodies
        self.loaded: dict[str, int] = {}

    def texture(self, body: int, name: str | None, rgb) -> None:
        if name is not None:
            path = texture_path(name, self.contrast)
            if path not in self.loaded:
                self.loaded[path] = self.client.loadTexture(path)
            self.client.changeVisualShape(body, -1, textureUniqueId=self.loaded[path],
                                          rgbaColor=_rgba(rgb))

    def cylinder_visual(self, radius: float, height: float, rgb) -> int:
        sides = self.geometry.cylinder_sides
        if not sides:
            return _primitive_visual(self.client, p.GEOM_CYLINDER, [radius, height], rgb)
        return _visual(self.client, prism_mesh(1.0, 1.0, sides), rgb, (radius, radius, height))

    def obstacles(self) -> list[int]:
        client, scene, bodies = self.client, self.scene, []
        for ob, rgb in zip(scene.obstacles, scene.obstacle_rgb):
            z = ob.height_m / 2
            if ob.kind == "box":
                size = [ob.size_m, ob.size_m, z]
                vis = (_visual(client, box_mesh(0.5, 0.5, 0.5), rgb, [2 * v for v in size])
                       if self.geometry.mesh_boxes
                       else _primitive_visual(client, p.GEOM_BOX, size, rgb))
                body = _body(client, _collision(client, p.GEOM_BOX, size), vis,
                             [ob.x, ob.y, z], ob.yaw, self.rigid)
            else:
                size = [ob.size_m, ob.height_m]
                body = _body(client, _collision(client, p.GEOM_CYLINDER, size),
                             self.cylinder_visual(*size, rgb), [ob.x, ob.y, z], rigid=self.rigid)
            self.texture(body, scene.obstacle_texture, rgb)
            bodies.append(body)
        return bodies

    def goal(self) -> int:
        values, scene = self.scene.values, self.scene
        radius, height = values["beacon_radius_m"], values["goal_height_m"]
        vis = self.cylinder_visual(radius, height, scene.goal_rgb)
        return _body(self.client, -1, vis, [scene.goal_xy[0], scene.goal_xy[1], height / 2],
                     rigid=self.rigid)

    def walls(self, half: float) -> list[int]:
        client, scene, geometry = self.client, self.scene, self.geometry
        h, t = WALL_HEIGHT_M / 2, WALL_THICKNESS_M / 2
        boxes = [([t, half + 2 * t, h], [half + t, 0, h]),
                 ([t, half + 2 * t, h], [-half - t, 0, h]),
                 ([half, t, h], [0, half + t, h]), ([half, t, h], [0, -half - t, h])]
        if geometry.walls == "box":
            walls = [_body(client, _collision(client, p.GEOM_BOX, size),
                           _primitive_visual(client, p.GEOM_BOX, size, scene.wall_rgb), pos,
                           rigid=self.rigid) for size, pos in boxes]
        else:
            # one body: the thick collision boxes as a compound, the inner faces as one mesh
            col = client.createCollisionShapeArray(
                [p.GEOM_BOX] * 4, halfExtents=[size for size, _ in boxes],
                collisionFramePositions=[pos for _, pos in boxes])
            tiles = geometry.wall_tiles if geometry.walls == "tiles" else 1
            vis = _visual(client, wall_mesh(half, WALL_HEIGHT_M, tiles), scene.wall_rgb)
            walls = [_body(client, col, vis, [0, 0, 0], rigid=self.rigid)]
        for wall in walls:
            self.texture(wall, scene.wall_texture, scene.wall_rgb)
        return walls

    def floor(self, half: float) -> int:
        client, scene, geometry = self.client, self.scene, self.geometry
        if geometry.floor == "box":
            vis = _primitive_visual(client, p.GEOM_BOX, [half + 0.5, half + 0.5, 0.005],
                                    scene.floor_rgb)
            floor = _body(client, -1, vis, [0, 0, -0.005], rigid=self.rigid)
        else:
            tiles = geometry.floor_tiles if geometry.floor == "tiles" else 1
            floor = _body(client, -1, _visual(client, floor_mesh(half, tiles), scene.floor_rgb),
                          [0, 0, 0], rigid=self.rigid)
        self.texture(floor, scene.floor_texture, scene.floor_rgb)
        return floor


def build_scene(client, scene: SceneParams, half_size_m: float, robot_radius_m: float,
                geometry: Geometry = FAST, robot_drawn: bool = True,
                camera_mount_m: float = ObservationConfig.camera_mount_m) -> SceneBodies:
    """Reset the simulation and create floor, walls, obstacles, goal and robot (no gravity:
    the robot is driven by setting its base velocity; contacts are the solver's).

    `robot_drawn` False builds the robot without its visual (only for worlds whose top-down
    view is never rendered, when the geometry hides the robot from its camera).
    `camera_mount_m` places the drawn mast (the env config's default unless given)."""
    client.resetSimulation()
    client.setGravity(0, 0, 0)
    build = _Builder(client, scene, geometry)
    if geometry.occluders_first:
        obstacles, goal = build.obstacles(), build.goal()
        walls, floor = build.walls(half_size_m), build.floor(half_size_m)
    else:
        floor, walls = build.floor(half_size_m), build.walls(half_size_m)
        obstacles, goal = build.obstacles(), build.goal()
    drawn = robot_drawn or geometry.robot_visible
    robot = _robot(client, robot_radius_m, scene.values["mass_kg"], drawn, geometry,
                   camera_mount_m)
    if drawn and not geometry.robot_visible:
        show_robot(client, robot, False)
    return SceneBodies(robot, goal, walls, obstacles, floor)


# ----------------------------------------------------------------------------- cameras


class Camera:
    """The onboard camera of one episode: projection and light are fixed per episode, so they
    are prepared once and every frame is a single renderer call."""

    def __init__(self, client_id: int, width: int, height: int, fov_deg: float,
                 scene: SceneParams, segmentation: bool = False, far_m: float = FAR_M):
        self.client_id, self.width, self.height, self.far_m = client_id, width, height, far_m
        self.segmentation = segmentation
        values = scene.values
        # TinyRenderer keeps light and shadow settings between calls: pass them every time.
        self._kwargs = dict(
            projectionMatrix=p.computeProjectionMatrixFOV(fov_deg, width / height, NEAR_M, far_m),
            renderer=p.ER_TINY_RENDERER, shadow=0,
            lightDirection=list(scene.light_direction), lightColor=list(scene.light_color),
            lightDistance=5.0, lightAmbientCoeff=values["light_ambient"],
            lightDiffuseCoeff=values["light_diffuse"],
            lightSpecularCoeff=values["light_specular"],
            flags=0 if segmentation else p.ER_NO_SEGMENTATION_MASK,
            physicsClientId=client_id)

    def render(self, eye, target) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(RGBA uint8 HxWx4, depth buffer HxW in [0, 1], segmentation HxW or None)."""
        view = p.computeViewMatrix(eye, target, (0.0, 0.0, 1.0), physicsClientId=self.client_id)
        _, _, rgba, depth, seg = p.getCameraImage(self.width, self.height, view, **self._kwargs)
        h, w = self.height, self.width
        seg_arr = np.asarray(seg, dtype=np.int32).reshape(h, w) if self.segmentation else None
        return (np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4),
                np.asarray(depth, dtype=np.float32).reshape(h, w), seg_arr)

    def depth_m(self, buffer: np.ndarray) -> np.ndarray:
        """Metres from the depth buffer's non-linear [0, 1] values."""
        far = self.far_m
        return far * NEAR_M / (far - (far - NEAR_M) * buffer)


def render_camera(client, width: int, height: int, eye, target, fov_deg: float,
                  scene: SceneParams, segmentation: bool = False, far_m: float = FAR_M):
    """One TinyRenderer image: (rgb uint8 HxWx3, depth in metres HxW float32, seg or None)."""
    camera = Camera(client._client, width, height, fov_deg, scene, segmentation, far_m)
    rgba, buffer, seg = camera.render(eye, target)
    return rgba[..., :3], camera.depth_m(buffer), seg
