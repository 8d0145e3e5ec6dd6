"""The pure scene sampler: (rng, config, strength) -> SceneParams.

Called only from `CameraNavEnv.reset`. Every appearance and physics value is drawn from the
ranges in `RandomizationConfig`; strength s moves a value from its anchor (the strength-0 value)
towards the drawn one: v = anchor + s * (u - anchor), u ~ U(low, high), then clipped to the
field's physical limits. The layout (start, goal, obstacles) is drawn from a per-episode layout
seed whose parity encodes the split, so `train` and `heldout` never share a layout.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from envs.config import GROUPS, SPLITS, EnvConfig, RandomizationConfig
from envs.grid import (
    Obstacle,
    distance_field,
    footprint_clearance,
    geodesic_distance,
    occupancy_grid,
)
from envs.textures import TEXTURE_VARIANTS

Strength = float | Mapping[str, float]


@dataclass(frozen=True)
class SceneParams:
    """Everything one episode's world is built from. Colours are RGB in [0, 1]."""

    layout_seed: int
    start_xy: tuple[float, float]
    start_yaw: float
    goal_xy: tuple[float, float]
    obstacles: tuple[Obstacle, ...]
    values: dict[str, float] = field(default_factory=dict)
    """One drawn value per RandomizationConfig field."""
    light_direction: tuple[float, float, float] = (0.0, 0.0, 1.0)
    light_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    floor_rgb: tuple[float, float, float] = (0.5, 0.5, 0.5)
    wall_rgb: tuple[float, float, float] = (0.7, 0.7, 0.7)
    obstacle_rgb: tuple[tuple[float, float, float], ...] = ()
    goal_rgb: tuple[float, float, float] = (1.0, 0.0, 0.0)
    floor_texture: str | None = None
    wall_texture: str | None = None
    obstacle_texture: str | None = None

    def summary(self) -> dict:
        """Flat JSON-friendly record of the drawn parameters (for episode logs)."""
        return {
            "layout_seed": self.layout_seed,
            **{k: round(float(v), 5) for k, v in self.values.items()},
            "obstacle_count": len(self.obstacles),
            "floor_texture": self.floor_texture, "wall_texture": self.wall_texture,
            "obstacle_texture": self.obstacle_texture,
        }


def group_strengths(strength: Strength) -> dict[str, float]:
    """A per-group strength; a mapping leaves unnamed groups at 0 (isolates one factor)."""
    if isinstance(strength, Mapping):
        unknown = set(strength) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown randomization group(s) {sorted(unknown)}; "
                             f"use {list(GROUPS)}")
        per_group = {g: float(strength.get(g, 0.0)) for g in GROUPS}
    else:
        per_group = {g: float(strength) for g in GROUPS}
    if any(v < 0 for v in per_group.values()):
        raise ValueError(f"randomization strength must be >= 0, got {strength}")
    return per_group


def _anchor(low: float, high: float, kind: str) -> float:
    return {"low": low, "high": high, "mid": 0.5 * (low + high)}[kind]


def sample_values(rng: np.random.Generator, ranges: RandomizationConfig,
                  strength: Strength) -> dict[str, float]:
    """One value per randomization field, scaled by its group's strength and clipped."""
    per_group = group_strengths(strength)
    values = {}
    for f in dataclasses.fields(ranges):
        low, high = getattr(ranges, f.name)
        anchor = _anchor(low, high, f.metadata["anchor"])
        u = rng.uniform(low, high)
        v = anchor + per_group[f.metadata["group"]] * (u - anchor)
        lo_lim, hi_lim = f.metadata["limits"]
        values[f.name] = float(np.clip(v, lo_lim, hi_lim))
    return values


def _hue_from_bands(rng: np.random.Generator, bands: tuple[tuple[float, float], ...]) -> float:
    widths = np.array([b - a for a, b in bands])
    k = rng.choice(len(bands), p=widths / widths.sum())
    return float(rng.uniform(*bands[k]) % 360.0) / 360.0


def _colour(rng: np.random.Generator, bands, sat: float, val: float, s: float) -> tuple:
    """A colour from the split's hue bands; at appearance strength 0 a neutral grey."""
    hue = _hue_from_bands(rng, bands)
    rgb = colorsys.hsv_to_rgb(hue, sat * min(s, 1.0), val)
    return tuple(float(c) for c in rgb)


def _light(rng: np.random.Generator, values: dict[str, float]) -> tuple[tuple, tuple]:
    az, el = math.radians(values["light_azimuth_deg"]), math.radians(values["light_elevation_deg"])
    direction = (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))
    tint = values["light_tint"]
    colour = tuple(float(np.clip(1.0 + tint * rng.uniform(-1, 1), 0.2, 1.5)) for _ in range(3))
    return direction, colour


def _sample_layout(rng: np.random.Generator, cfg: EnvConfig, values: dict[str, float]):
    """Start, goal and obstacles with a guaranteed collision-free path (grid check)."""
    half, r = cfg.arena_half_size_m, cfg.robot_radius_m
    margin = r + 0.15
    count = int(round(values["obstacle_count"]))
    for _ in range(200):
        start = rng.uniform(-half + margin, half - margin, size=2)
        goal = rng.uniform(-half + margin, half - margin, size=2)
        if np.linalg.norm(goal - start) < cfg.min_goal_distance_m:
            continue
        obstacles = []
        for _ in range(count * 10):
            if len(obstacles) == count:
                break
            size = float(np.clip(values["obstacle_size_m"] * rng.uniform(0.75, 1.25), 0.05, 0.5))
            kind = "cylinder" if rng.uniform() < values["cylinder_fraction"] else "box"
            ob = Obstacle(kind, *(float(v) for v in rng.uniform(-half + 0.3, half - 0.3, 2)),
                          size, float(rng.uniform(0, math.pi)),
                          float(values["obstacle_height_m"] * rng.uniform(0.8, 1.2)))
            keep_clear = footprint_clearance([ob], np.stack([start, goal]))
            if np.all(keep_clear > r + 0.25):
                obstacles.append(ob)
        grid = occupancy_grid(obstacles, half, cfg.grid_resolution_m, r)
        field_ = distance_field(grid, goal)
        if np.isfinite(geodesic_distance(grid, field_, start)):
            yaw = float(rng.uniform(-math.pi, math.pi))
            return tuple(start), yaw, tuple(goal), tuple(obstacles), grid, field_
    raise RuntimeError("could not sample a layout with a free path in 200 tries; "
                       "lower env.randomization.obstacle_count or obstacle_size_m")


def sample_scene(rng: np.random.Generator, cfg: EnvConfig, strength: Strength | None = None,
                 split: str | None = None):
    """Draw one episode's SceneParams; also returns the planner grid and distance field.

    The layout seed is drawn from `rng`, its parity set by the split (train even, heldout odd),
    and the layout is drawn from its own generator, so the splits can never share one. (The
    layout also depends on the drawn obstacle count and sizes.)
    """
    split = split or cfg.split
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
    appearance = SPLITS[split]
    per_group = group_strengths(cfg.strength if strength is None else strength)
    values = sample_values(rng, cfg.randomization, per_group)
    layout_seed = int(rng.integers(0, 2**30)) * 2 + (1 if split == "heldout" else 0)
    start, yaw, goal_xy, obstacles, grid, field_ = _sample_layout(
        np.random.default_rng(layout_seed), cfg, values)
    light_dir, light_col = _light(rng, values)
    s_app = per_group["appearance"]
    bands = appearance.obstacle_hue_bands_deg
    sat, val = values["colour_saturation"], values["colour_value"]
    grey = values["floor_value"]
    floor = _colour(rng, bands, 0.3 * sat, grey, s_app)
    wall = _colour(rng, bands, sat, val, s_app)
    obstacle_rgb = tuple(_colour(rng, bands, sat, val * rng.uniform(0.8, 1.0), s_app)
                         for _ in obstacles)
    goal_hue = _hue_from_bands(rng, (appearance.goal_hue_band_deg,))
    goal_rgb = tuple(float(c) for c in colorsys.hsv_to_rgb(goal_hue, 0.95, values["goal_value"]))
    textures = []
    for _ in range(3):
        family = appearance.texture_families[rng.integers(len(appearance.texture_families))]
        variant = int(rng.integers(TEXTURE_VARIANTS))
        textures.append(f"{family}_{variant}" if values["texture_contrast"] > 0.05 else None)
    scene = SceneParams(
        layout_seed=layout_seed, start_xy=start, start_yaw=yaw, goal_xy=goal_xy,
        obstacles=obstacles, values=values, light_direction=light_dir, light_color=light_col,
        floor_rgb=floor, wall_rgb=wall, obstacle_rgb=obstacle_rgb, goal_rgb=goal_rgb,
        floor_texture=textures[0], wall_texture=textures[1], obstacle_texture=textures[2])
    return scene, grid, field_
