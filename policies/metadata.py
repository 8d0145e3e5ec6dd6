"""Checkpoint metadata: what a checkpoint says about its policy, typed, parsed and bounded.

A checkpoint may come from anywhere, so its metadata is checked against the bounds below
before anything is built from it: a bad field is refused with one line naming the file, the
field and what is allowed, never with a traceback or a network of hundreds of GB. Metadata of
older checkpoints (`frame_stack` and `continuous` at the top level) still loads.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs.config import MAX_FRAME_STACK, ConfigError, EnvConfig, from_dict, to_dict
from envs.nav_env import DISCRETE_ACTIONS

# Bounds on what a checkpoint may ask for. They are far above anything this project trains
# (64x64 images, 5 actions, 200-step episodes, ~0.6 M parameters) and far below what would
# exhaust a machine.
N_DISCRETE_ACTIONS = len(DISCRETE_ACTIONS)
"""The env's discrete actions; a discrete policy must output exactly these."""
MIN_IMAGE_SIDE_PX = 36
"""The CNN's three conv layers (8/4, 4/2, 3/1) need at least this many pixels."""
MAX_IMAGE_SIDE_PX = 512
MAX_CONV_CHANNELS = 512
MAX_FEATURES = 4096
MAX_HIDDEN_LAYERS = 8
MAX_HIDDEN_UNITS = 4096
MAX_PARAMETERS = 50_000_000
"""The largest network a checkpoint may describe (200 MB of float32 weights)."""
MAX_EPISODE_STEPS = 10_000
MAX_PHYSICS_SUBSTEPS = 100
MAX_GRID_CELLS_PER_SIDE = 1_000
MAX_LIDAR_RAYS = 1_024
MAX_META_CHARS = 1_000_000
MAX_TIMESTEPS = 10**12

_FIELDS = ("env", "arch", "observation_space", "action_space", "method", "timesteps", "seed",
           "heldout_success", "heldout_spl")
_LEGACY_FIELDS = ("frame_stack", "continuous")
"""Older checkpoints stored these at the top level; `env.observation.frame_stack` and
`action_space` now say the same."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not in this project's format."""


def _show(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(source: Any, field: str, problem: str, allowed: str) -> CheckpointError:
    subject = f"checkpoint metadata {field}" if field else "checkpoint metadata"
    return CheckpointError(f"{source}: {subject} {problem}; allowed: {allowed}. Re-save it "
                           "with `embodied train` or use another file")


def _int(source: Any, data: Mapping[str, Any], field: str, low: int, high: int,
         where: str | None = None) -> int:
    name = where or field
    allowed = f"exactly {low}" if low == high else f"an integer {low}-{high:,}"
    if field not in data:
        raise _refuse(source, name, "is missing", allowed)
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _refuse(source, name, f"= {_show(value)}", allowed)
    return value


def _mapping(source: Any, data: Mapping[str, Any], field: str, keys: tuple[str, ...]
             ) -> Mapping[str, Any]:
    value = data.get(field)
    if not isinstance(value, dict):
        problem = "is missing" if field not in data else f"= {_show(value)}"
        raise _refuse(source, field, problem, f"an object with {', '.join(keys)}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise _refuse(source, f"{field}.{unknown[0]}", "is unknown", ", ".join(keys))
    return value


# ---------------------------------------------------------------------------- the metadata


@dataclass(frozen=True)
class ArchSpec:
    """The camera network: CNN channels, feature size, the LSTM between the CNN and the
    actor's MLP (0: none, a feed-forward policy) and the policy/value MLP widths."""

    features_dim: int
    channels: tuple[int, int, int]
    net_arch: tuple[int, ...]
    lstm_hidden: int = 0

    @property
    def recurrent(self) -> bool:
        return self.lstm_hidden > 0

    def as_dict(self) -> dict[str, Any]:
        spec = {"features_dim": self.features_dim, "channels": list(self.channels),
                "net_arch": list(self.net_arch)}
        if self.recurrent:  # feed-forward checkpoints keep the first release's metadata
            spec["lstm_hidden"] = self.lstm_hidden
        return spec

    def parameter_count(self, image_chw: tuple[int, int, int], n_outputs: int) -> int:
        """Weights of the SB3 policy this spec builds on (C, H, W) images, counted without
        building it (one shared CNN, separate policy and value MLPs, both heads)."""
        c, h, w = image_chw
        total, c_in = 0, c
        for c_out, k, s in zip(self.channels, (8, 4, 3), (4, 2, 1)):
            total += c_in * c_out * k * k + c_out
            h, w, c_in = (h - k) // s + 1, (w - k) // s + 1, c_out
        total += c_in * h * w * self.features_dim + self.features_dim
        first = self.features_dim
        if self.recurrent:
            # the actor's LSTM (two bias vectors per gate), and the critic's linear layer from
            # the features to the LSTM's width (sb3-contrib, no critic LSTM)
            hid = self.lstm_hidden
            total += 4 * (self.features_dim * hid + hid * hid + 2 * hid)
            total += self.features_dim * hid + hid
            first = hid
        for _ in ("pi", "vf"):
            size = first
            for units in self.net_arch:
                total += size * units + units
                size = units
        size = self.net_arch[-1] if self.net_arch else first
        return total + (size + 1) * n_outputs + (size + 1) + (n_outputs if n_outputs == 2 else 0)


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about its policy, parsed and bounded (see `from_json`)."""

    env: EnvConfig
    """The env config the policy was trained in (split as trained; see `env_config`)."""
    arch: ArchSpec
    continuous: bool
    """Continuous (2,) actions in [-1, 1], else one of the env's discrete actions."""
    method: str | None = None
    timesteps: int | None = None
    seed: int | None = None
    heldout_success: float | None = None
    heldout_spl: float | None = None

    @property
    def frame_stack(self) -> int:
        return self.env.observation.frame_stack

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the (frame-stacked) uint8 images the policy takes."""
        obs = self.env.observation
        return obs.height, obs.width, obs.stacked_channels

    @property
    def n_outputs(self) -> int:
        """Logits of a discrete policy, or the length of a continuous action."""
        return 2 if self.continuous else N_DISCRETE_ACTIONS

    def observation_space(self) -> gym.spaces.Box:
        """The network's input space: channel-first uint8 (C, H, W)."""
        h, w, c = self.image_shape
        return gym.spaces.Box(0, 255, (c, h, w), np.uint8)

    def action_space(self) -> gym.Space:
        if self.continuous:
            return gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        return gym.spaces.Discrete(N_DISCRETE_ACTIONS)

    def env_config(self, split: str | None = None) -> EnvConfig:
        """The env this policy was trained for, on `split` (None: the split it trained on).

        Everything else (observation size, sensors, frame stack, speeds, max_steps) is kept,
        since a policy is only defined on the observations it was trained with.
        """
        return self.env if split is None else dataclasses.replace(self.env, split=split)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in checkpoints and ONNX files (spaces spelled out)."""
        h, w, c = self.image_shape
        action = ({"type": "box", "shape": [2], "dtype": "float32", "low": -1.0, "high": 1.0}
                  if self.continuous else {"type": "discrete", "n": N_DISCRETE_ACTIONS})
        facts = {f: getattr(self, f) for f in ("method", "timesteps", "seed", "heldout_success",
                                                "heldout_spl") if getattr(self, f) is not None}
        return {"env": to_dict(self.env), "arch": self.arch.as_dict(),
                "observation_space": {"type": "box", "shape": [c, h, w], "dtype": "uint8",
                                      "low": 0.0, "high": 255.0},
                "action_space": action, **facts}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: Any, source: Any) -> CheckpointMeta:
        """Parse the metadata JSON of `source` (a file, named in every error)."""
        if not isinstance(text, str):
            raise _refuse(source, "", f"is a {type(text).__name__}", "a JSON string")
        if len(text) > MAX_META_CHARS:
            raise _refuse(source, "", f"is {len(text):,} characters long",
                          f"at most {MAX_META_CHARS:,}")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise _refuse(source, "", f"is not valid JSON ({type(err).__name__})",
                          "a JSON object") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Any, source: Any) -> CheckpointMeta:
        """Check every field of `data` against the bounds above; CheckpointError on the first
        bad one. Nothing is allocated here: the network is built only from a result."""
        if not isinstance(data, dict):
            raise _refuse(source, "", f"is a JSON {type(data).__name__}", "a JSON object")
        unknown = sorted(set(data) - set(_FIELDS) - set(_LEGACY_FIELDS))
        if unknown:
            raise _refuse(source, unknown[0], "is unknown", ", ".join(_FIELDS))
        continuous = _action_space(source, data)
        if "continuous" in data and data["continuous"] is not continuous:
            raise _refuse(source, "continuous", f"= {_show(data['continuous'])} disagrees with "
                          "action_space", f"{continuous} or leave it out")
        env = _env(source, data)
        arch = _arch(source, data)
        meta = cls(env, arch, continuous, **_facts(source, data))
        _check_observation_space(source, data, meta)
        n = arch.parameter_count(meta.observation_space().shape, meta.n_outputs)
        if n > MAX_PARAMETERS:
            raise _refuse(source, "arch", f"describes a network of {n:,} parameters",
                          f"at most {MAX_PARAMETERS:,} (smaller features_dim, channels or "
                          "image)")
        return meta


def _action_space(source: Any, data: Mapping[str, Any]) -> bool:
    """True for the env's continuous box, False for its discrete actions."""
    space = _mapping(source, data, "action_space", ("type", "n", "shape", "dtype", "low",
                                                      "high"))
    kind = space.get("type")
    if kind == "discrete":
        _int(source, space, "n", N_DISCRETE_ACTIONS, N_DISCRETE_ACTIONS, "action_space.n")
        return False
    if kind == "box":
        expected = {"shape": [2], "dtype": "float32", "low": -1.0, "high": 1.0}
        for key, value in expected.items():
            if space.get(key) != value or isinstance(space.get(key), bool):
                raise _refuse(source, f"action_space.{key}", f"= {_show(space.get(key))}",
                              f"{value!r} (the env's continuous action box)")
        return True
    raise _refuse(source, "action_space.type", f"= {_show(kind)}", "'discrete' or 'box'")


def _env(source: Any, data: Mapping[str, Any]) -> EnvConfig:
    raw = data.get("env")
    if not isinstance(raw, dict):
        problem = "is missing" if "env" not in data else f"= {_show(raw)}"
        raise _refuse(source, "env", problem, "the env config as an object")
    if "frame_stack" in data:  # older checkpoints: frame_stack at the top level
        stack = _int(source, data, "frame_stack", 1, MAX_FRAME_STACK)
        observation = raw.get("observation", {})
        if not isinstance(observation, dict):
            raise _refuse(source, "env.observation", f"= {_show(observation)}", "an object")
        if observation.get("frame_stack", stack) != stack:
            raise _refuse(source, "frame_stack", f"= {stack} disagrees with "
                          "env.observation.frame_stack", "one value, in env.observation")
        raw = {**raw, "observation": {**observation, "frame_stack": stack}}
    try:
        env = from_dict(EnvConfig, raw, "env")
    except ConfigError as err:
        raise CheckpointError(f"{source}: checkpoint metadata {err}. Re-save it with "
                              "`embodied train` or use another file") from None
    obs = env.observation
    cells = 2 * env.arena_half_size_m / env.grid_resolution_m
    bounded = (
        ("env.max_steps", env.max_steps, 1, MAX_EPISODE_STEPS),
        ("env.physics_hz", env.substeps, 1, MAX_PHYSICS_SUBSTEPS),
        ("env.arena_half_size_m", cells, 1, MAX_GRID_CELLS_PER_SIDE),
        ("env.observation.width", obs.width, MIN_IMAGE_SIDE_PX, MAX_IMAGE_SIDE_PX),
        ("env.observation.height", obs.height, MIN_IMAGE_SIDE_PX, MAX_IMAGE_SIDE_PX),
        ("env.observation.lidar_rays", obs.lidar_rays, 1, MAX_LIDAR_RAYS),
    )
    allowed = {
        "env.physics_hz": f"at most {MAX_PHYSICS_SUBSTEPS} physics steps per control step",
        "env.arena_half_size_m": f"an arena of at most {MAX_GRID_CELLS_PER_SIDE} grid cells "
                                 "per side (2 x arena_half_size_m / grid_resolution_m)",
    }
    for name, value, low, high in bounded:
        if not low <= value <= high:
            raise _refuse(source, name, f"= {_show(_getattr_path(env, name))}",
                          allowed.get(name, f"{low}-{high:,}"))
    if not obs.image_only:
        raise _refuse(source, "env.observation", "is not an image alone",
                      "camera, depth or segmentation; lidar, proprio and privileged off")
    return env


def _getattr_path(obj: Any, dotted: str) -> Any:
    """`obj.a.b` for "env.a.b" (the leading `env.` names the root)."""
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def _arch(source: Any, data: Mapping[str, Any]) -> ArchSpec:
    raw = _mapping(source, data, "arch", ("features_dim", "channels", "net_arch",
                                          "lstm_hidden"))
    features = _int(source, raw, "features_dim", 1, MAX_FEATURES, "arch.features_dim")
    lstm = (_int(source, raw, "lstm_hidden", 0, MAX_HIDDEN_UNITS, "arch.lstm_hidden")
            if "lstm_hidden" in raw else 0)
    lists = {}
    for key, low_len, high_len, high in (("channels", 3, 3, MAX_CONV_CHANNELS),
                                         ("net_arch", 0, MAX_HIDDEN_LAYERS, MAX_HIDDEN_UNITS)):
        value = raw.get(key)
        allowed = (f"a list of {low_len}-{high_len} integers 1-{high:,}" if low_len != high_len
                   else f"a list of {low_len} integers 1-{high:,}")
        if not isinstance(value, list) or not low_len <= len(value) <= high_len:
            raise _refuse(source, f"arch.{key}", f"= {_show(value)}", allowed)
        items = {str(i): v for i, v in enumerate(value)}
        lists[key] = tuple(_int(source, items, str(i), 1, high, f"arch.{key}[{i}]")
                           for i in range(len(value)))
    return ArchSpec(features, lists["channels"], lists["net_arch"], lstm)


def _facts(source: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    if data.get("method") is not None:
        method = data["method"]
        if not isinstance(method, str) or not 0 < len(method) <= 64:
            raise _refuse(source, "method", f"= {_show(method)}", "a name of 1-64 characters")
        facts["method"] = method
    if data.get("timesteps") is not None:
        facts["timesteps"] = _int(source, data, "timesteps", 0, MAX_TIMESTEPS)
    if data.get("seed") is not None:
        facts["seed"] = _int(source, data, "seed", -(2**63), 2**63 - 1)
    for key in ("heldout_success", "heldout_spl"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise _refuse(source, key, f"= {_show(value)}", "a number in [0, 1]")
        facts[key] = float(value)
    return facts


def _check_observation_space(source: Any, data: Mapping[str, Any], meta: CheckpointMeta) -> None:
    space = _mapping(source, data, "observation_space", ("type", "shape", "dtype", "low",
                                                         "high"))
    expected = meta.to_dict()["observation_space"]
    for key, value in expected.items():
        if space.get(key) != value or isinstance(space.get(key), bool):
            raise _refuse(source, f"observation_space.{key}", f"= {_show(space.get(key))}",
                          f"{value!r} (the frame-stacked camera image of env.observation)")
