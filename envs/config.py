"""Environment configuration: the task, the sensors, and every randomization range.

Each field has a docstring-style comment used as its help text. Randomization ranges are
`(low, high)` pairs at strength 1; `anchor` in the field metadata says where strength 0 puts the
value ("low" for nuisances such as noise and latency, "mid" otherwise). Splits (`train`,
`heldout`) choose disjoint colour bands and texture families, so held-out evaluation measures
generalisation to appearance never seen in training.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

Range = tuple[float, float]

MAX_FRAME_STACK = 16
"""Most frames `ObservationConfig.frame_stack` may stack."""

MAX_FRAME_STRIDE = 32
"""Most steps `ObservationConfig.frame_stride` may put between stacked frames."""
COMMAND_CHANNELS = 2
"""Channels `ObservationConfig.previous_command` adds: linear, then angular."""

GROUPS = ("lighting", "appearance", "layout", "physics", "camera", "image_noise")
"""Randomization factor groups; per-factor robustness sweeps scale one group at a time."""


def _rng(low: float, high: float, group: str, doc: str, anchor: str = "mid", limits: Range = (
        -math.inf, math.inf)) -> Any:
    return field(default=(low, high), metadata={
        "group": group, "doc": doc, "anchor": anchor, "limits": limits})


@dataclass(frozen=True)
class SplitAppearance:
    """Colours and textures one split may draw from; the two splits share none."""

    obstacle_hue_bands_deg: tuple[Range, ...]
    """Hue bands (degrees) for obstacles, walls and floor tint."""
    texture_families: tuple[str, ...]
    """Procedural texture families (see envs/textures.py)."""
    goal_hue_band_deg: Range
    """Hue band of the goal beacon: always a saturated red-magenta family."""


TRAIN_APPEARANCE = SplitAppearance(
    obstacle_hue_bands_deg=((40.0, 100.0), (160.0, 220.0)),
    texture_families=("checker", "stripes"),
    goal_hue_band_deg=(340.0, 360.0),
)
HELDOUT_APPEARANCE = SplitAppearance(
    obstacle_hue_bands_deg=((100.0, 160.0), (220.0, 290.0)),
    texture_families=("dots", "noise"),
    goal_hue_band_deg=(0.0, 12.0),
)


@dataclass(frozen=True)
class RandomizationConfig:
    """Every domain-randomization range in one place (values at strength 1)."""

    # lighting
    light_azimuth_deg: Range = _rng(0.0, 360.0, "lighting", "Light direction azimuth.")
    light_elevation_deg: Range = _rng(30.0, 80.0, "lighting", "Light elevation above floor.")
    light_ambient: Range = _rng(0.45, 0.8, "lighting", "Ambient coefficient.", limits=(0.05, 1.0))
    light_diffuse: Range = _rng(0.3, 0.7, "lighting", "Diffuse coefficient.", limits=(0.0, 1.0))
    light_specular: Range = _rng(0.0, 0.3, "lighting", "Specular coefficient.", "low",
                                 (0.0, 1.0))
    light_tint: Range = _rng(0.0, 0.2, "lighting", "Per-channel light colour jitter.", "low",
                             (0.0, 0.8))
    # appearance (hues come from the split's bands; these scale how much they vary)
    colour_saturation: Range = _rng(0.15, 0.7, "appearance", "Obstacle/wall saturation.",
                                    limits=(0.0, 1.0))
    colour_value: Range = _rng(0.45, 0.95, "appearance", "Obstacle/wall brightness.",
                               limits=(0.1, 1.0))
    floor_value: Range = _rng(0.35, 0.75, "appearance", "Floor brightness.", limits=(0.1, 1.0))
    texture_contrast: Range = _rng(0.0, 0.5, "appearance", "Blend of procedural texture.", "low",
                                   (0.0, 1.0))
    goal_value: Range = _rng(0.8, 1.0, "appearance", "Goal beacon brightness.", "high",
                             (0.5, 1.0))
    # layout
    obstacle_count: Range = _rng(3, 7, "layout", "Number of obstacles (rounded).", limits=(0, 10))
    obstacle_size_m: Range = _rng(0.12, 0.3, "layout", "Obstacle half-width / radius.",
                                  limits=(0.05, 0.5))
    obstacle_height_m: Range = _rng(0.25, 0.5, "layout", "Obstacle height.", limits=(0.1, 0.6))
    cylinder_fraction: Range = _rng(0.0, 1.0, "layout", "Chance an obstacle is a cylinder.",
                                    limits=(0.0, 1.0))
    goal_height_m: Range = _rng(0.8, 1.1, "layout", "Goal beacon height.", limits=(0.5, 1.5))
    beacon_radius_m: Range = _rng(0.22, 0.28, "layout", "Goal beacon radius (visual only).",
                                  limits=(0.03, 0.3))
    # physics
    friction: Range = _rng(0.7, 1.3, "physics", "Wheel traction (1 = no slip).",
                           limits=(0.2, 2.0))
    mass_kg: Range = _rng(0.8, 1.6, "physics", "Robot mass.", limits=(0.2, 5.0))
    motor_strength: Range = _rng(0.8, 1.2, "physics", "Motor gain on commanded speed.",
                                 limits=(0.3, 2.0))
    action_noise: Range = _rng(0.0, 0.1, "physics", "Relative Gaussian noise on commands.",
                               "low", (0.0, 1.0))
    action_latency_steps: Range = _rng(0, 1, "physics", "Control steps of command delay.",
                                       "low", (0, 5))
    # camera
    camera_height_m: Range = _rng(0.2, 0.3, "camera", "Camera height above floor.",
                                  limits=(0.08, 0.6))
    camera_pitch_deg: Range = _rng(-14.0, -4.0, "camera", "Camera pitch (negative = down).",
                                   limits=(-45.0, 20.0))
    # A wide lens keeps the goal in the image round more of a detour: the oracle drives with the
    # goal out of view on 4.1 % of its steps at 105-125 degrees against 6.6 % at 80-95, and the
    # students that turn in place there are the main failure (README, routes table).
    camera_fov_deg: Range = _rng(105.0, 125.0, "camera", "Field of view (square image).",
                                 limits=(40.0, 150.0))
    # image noise
    image_noise_std: Range = _rng(0.0, 6.0, "image_noise", "Gaussian pixel noise (0-255 units).",
                                  "low", (0.0, 60.0))
    brightness: Range = _rng(-20.0, 20.0, "image_noise", "Additive brightness (0-255 units).")
    contrast: Range = _rng(0.8, 1.2, "image_noise", "Contrast gain.", limits=(0.1, 3.0))
    blur_probability: Range = _rng(0.0, 0.3, "image_noise", "Chance of a 3x3 box blur.", "low",
                                   (0.0, 1.0))


@dataclass(frozen=True)
class RewardConfig:
    """Reward = sum of named terms (each reported in info['reward_terms'])."""

    progress: float = 2.0
    """Per metre of geodesic distance to the goal gained this step."""
    success: float = 10.0
    """Once, on reaching the goal."""
    collision: float = -0.5
    """Each control step that ends in contact with a wall or obstacle."""
    time: float = -0.01
    """Each control step."""


@dataclass(frozen=True)
class ObservationConfig:
    """What the policy sees. The default is the onboard RGB camera alone."""

    width: int = 64
    """Camera image width (pixels)."""
    height: int = 64
    """Camera image height (pixels)."""
    camera: bool = True
    """RGB camera channels (uint8 H x W x 3)."""
    camera_mount_m: float = 0.10
    """Where the camera's mast stands on the base: its distance ahead of the base centre (m;
    negative = behind). At the front edge (the default) the image shows nothing beside the
    base; further back its sides show the obstacles the base's front corners pass."""
    depth: bool = False
    """Add a depth channel (uint8, 0-255 over 0-depth_max_m)."""
    segmentation: bool = False
    """Add a semantic channel (0 floor, 85 wall/obstacle, 170 goal, 255 robot)."""
    lidar: bool = False
    """Add a planar lidar vector (privileged opt-in, for ablations and teachers)."""
    proprio: bool = False
    """Add wheel/base state: commanded and achieved linear/angular speed."""
    privileged: bool = False
    """Add goal in robot frame and the planner's next waypoint (teacher-only state)."""
    lidar_rays: int = 32
    """Lidar rays over 360 degrees."""
    lidar_range_m: float = 3.0
    """Lidar maximum range."""
    depth_max_m: float = 6.0
    """Depth encoding range."""
    frame_stack: int = 1
    """Image frames the policy sees at once, oldest first along the channel axis (1 = the
    newest alone). Applied by `envs.wrappers.make_env`; a reset fills the stack with the
    first frame."""
    frame_stride: int = 1
    """Control steps between consecutive stacked frames (1 = the newest `frame_stack` frames).
    With 3 frames and stride 4 the policy sees steps t-8, t-4 and t: a memory of the last
    eight steps for the price of three frames."""
    previous_command: bool = False
    """Add two constant channels after the frames: the (linear, angular) command the robot took
    at its last step, each as a fraction of its top speed mapped from [-1, 1] to 0-255 (a reset
    holds the stop command). Applied by `envs.wrappers.make_env`; the deploy controller adds
    the command it last published."""

    @property
    def image_channels(self) -> int:
        """Channels of one image frame: RGB, then depth, then segmentation."""
        return 3 * self.camera + self.depth + self.segmentation

    @property
    def image_only(self) -> bool:
        """Whether the observation is an image alone (no lidar, proprio or privileged vector):
        what stacking, the command channels and a loadable checkpoint need."""
        return bool(self.image_channels) and not (self.lidar or self.proprio or self.privileged)

    @property
    def frame_channels(self) -> int:
        """Channels of the stacked frames: one frame's channels x frame_stack."""
        return self.image_channels * self.frame_stack

    @property
    def stacked_channels(self) -> int:
        """Channels of the observation a policy takes: the stacked frames', then the previous
        command's two."""
        return self.frame_channels + COMMAND_CHANNELS * self.previous_command


@dataclass(frozen=True)
class EnvConfig:
    """The navigation task."""

    arena_half_size_m: float = 2.0
    """Square arena of side 2 x this."""
    robot_radius_m: float = 0.12
    """Collision radius of the robot base."""
    goal_radius_m: float = 0.35
    """Success: robot centre within this distance of the goal centre (no STOP action)."""
    min_goal_distance_m: float = 1.5
    """Minimum straight-line start-goal distance."""
    control_hz: float = 10.0
    """Policy rate."""
    physics_hz: float = 60.0
    """Fixed physics step rate; must be a whole multiple of control_hz."""
    max_steps: int = 200
    """Truncation limit in control steps."""
    terminate_on_collision: bool = False
    """End the episode at the first contact."""
    max_linear_mps: float = 0.5
    """Top forward speed."""
    max_angular_rps: float = 1.6
    """Top turning rate (rad/s)."""
    grid_resolution_m: float = 0.1
    """Occupancy grid cell size for the planner and geodesic distances."""
    split: str = "train"
    """Appearance/layout split: train or heldout."""
    world_build: str = "fast"
    """How the world is built for the renderer and the solver (`envs.scene.Geometry`): fast
    (quads and tiles, the robot hidden from its own camera, sphere contact) or first-release
    (thick boxes, PyBullet cylinders, the robot drawn in every frame). Same colours, sizes
    and contact footprint; the first release's build renders about 0.8x as fast."""
    strength: float = 1.0
    """Randomization strength: 0 none, 1 training default, >1 harsher."""
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)

    def __post_init__(self) -> None:
        validate_env_config(self)

    @property
    def substeps(self) -> int:
        """Physics steps per control step."""
        return int(round(self.physics_hz / self.control_hz))


SPLITS = {"train": TRAIN_APPEARANCE, "heldout": HELDOUT_APPEARANCE}


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and the fix."""


WORLD_BUILDS = ("fast", "first-release")
"""Values of `EnvConfig.world_build` (`envs.scene.WORLD_BUILDS` maps them to geometries)."""


def validate_env_config(cfg: EnvConfig) -> None:
    """Reject configs that would make a broken env; one error naming the field."""
    if cfg.split not in SPLITS:
        raise ConfigError(f"env.split: unknown split {cfg.split!r}; use one of {sorted(SPLITS)}")
    if cfg.world_build not in WORLD_BUILDS:
        raise ConfigError(f"env.world_build: unknown build {cfg.world_build!r}; use one of "
                          f"{', '.join(WORLD_BUILDS)}")
    positive = {
        "arena_half_size_m": cfg.arena_half_size_m, "robot_radius_m": cfg.robot_radius_m,
        "goal_radius_m": cfg.goal_radius_m, "control_hz": cfg.control_hz,
        "physics_hz": cfg.physics_hz, "max_steps": cfg.max_steps,
        "max_linear_mps": cfg.max_linear_mps, "max_angular_rps": cfg.max_angular_rps,
        "grid_resolution_m": cfg.grid_resolution_m,
        "observation.width": cfg.observation.width, "observation.height": cfg.observation.height,
        "observation.lidar_rays": cfg.observation.lidar_rays,
        "observation.lidar_range_m": cfg.observation.lidar_range_m,
        "observation.depth_max_m": cfg.observation.depth_max_m,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ConfigError(f"env.{name}: must be > 0, got {value}")
    if cfg.strength < 0:
        raise ConfigError(f"env.strength: must be >= 0, got {cfg.strength}")
    ratio = cfg.physics_hz / cfg.control_hz
    if abs(ratio - round(ratio)) > 1e-9:
        raise ConfigError(
            f"env.physics_hz: must be a whole multiple of control_hz ({cfg.control_hz}), "
            f"got {cfg.physics_hz}")
    if cfg.min_goal_distance_m >= 2 * cfg.arena_half_size_m:
        raise ConfigError("env.min_goal_distance_m: must be smaller than the arena side "
                          f"({2 * cfg.arena_half_size_m} m)")
    obs = cfg.observation
    if not abs(obs.camera_mount_m) < cfg.robot_radius_m:
        raise ConfigError(f"env.observation.camera_mount_m: the mast must stand on the base, "
                          f"within robot_radius_m ({cfg.robot_radius_m}) of its centre; got "
                          f"{obs.camera_mount_m}")
    if not (obs.camera or obs.depth or obs.segmentation or obs.lidar or obs.proprio
            or obs.privileged):
        raise ConfigError("env.observation: every sensor is off; enable at least camera")
    if not 1 <= obs.frame_stack <= MAX_FRAME_STACK:
        raise ConfigError(f"env.observation.frame_stack: must be 1-{MAX_FRAME_STACK}, got "
                          f"{obs.frame_stack}")
    if not 1 <= obs.frame_stride <= MAX_FRAME_STRIDE:
        raise ConfigError(f"env.observation.frame_stride: must be 1-{MAX_FRAME_STRIDE}, got "
                          f"{obs.frame_stride}")
    if obs.frame_stack > 1 and not obs.image_only:
        raise ConfigError("env.observation.frame_stack: stacking needs an image-only "
                          "observation; turn lidar, proprio and privileged off or use 1")
    if obs.previous_command and not obs.image_only:
        raise ConfigError("env.observation.previous_command: the command channels need an "
                          "image-only observation; turn lidar, proprio and privileged off")
    for f in dataclasses.fields(cfg.randomization):
        low, high = getattr(cfg.randomization, f.name)
        lo_lim, hi_lim = f.metadata["limits"]
        if low > high:
            raise ConfigError(f"env.randomization.{f.name}: inverted range [{low}, {high}]; "
                              "write it as [low, high]")
        if low < lo_lim or high > hi_lim:
            raise ConfigError(f"env.randomization.{f.name}: [{low}, {high}] is outside the "
                              f"allowed [{lo_lim}, {hi_lim}]")


# --------------------------------------------------------------------------------------------
# dict/YAML <-> dataclass, shared by every stage's config


def _convert(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_dict(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], path)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Build dataclass `cls` from a (nested) dict, rejecting unknown keys and bad types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in names:
            raise ConfigError(f"{where}: unknown key; known keys: {', '.join(sorted(names))}")
        kwargs[key] = _convert(value, hints[key], where)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict of lists/numbers (YAML/JSON friendly)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    return obj
