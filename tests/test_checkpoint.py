"""The checkpoint format: typed metadata, legacy files, and hostile metadata refused in one line
before anything is allocated."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import embodied_cli
from envs.config import EnvConfig, ObservationConfig, to_dict
from policies import checkpoint
from policies.checkpoint import (
    FORMAT,
    CheckpointError,
    CheckpointMeta,
    build_policy,
    load_checkpoint,
    save_checkpoint,
)

REFERENCE = Path(__file__).resolve().parents[1] / "policies" / "reference" / "policy.pt"
ARCH = {"features_dim": 32, "channels": [8, 16, 16], "net_arch": [32]}
SIZE = 40
CFG = EnvConfig(observation=ObservationConfig(width=SIZE, height=SIZE, frame_stack=2))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A small valid checkpoint and its stored payload (meta as a dict)."""
    policy = build_policy(gym.spaces.Box(0, 255, (6, SIZE, SIZE), np.uint8),
                          gym.spaces.Discrete(5), ARCH)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "policy.pt", policy, ARCH,
                           {"env": to_dict(CFG), "method": "distill", "timesteps": 10})
    payload = torch.load(path, weights_only=True)
    return path, payload


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()

# (label, dotted field or "" for the whole meta, new value, text the error must name)
HOSTILE: list[tuple[str, str, Any, str]] = [
    ("empty object", "", {}, "action_space"),
    ("a list", "", [1, 2], "JSON list"),
    ("not JSON", "", "{not json", "not valid JSON"),
    ("a tensor", "", torch.zeros(1), "Tensor"),
    ("deep nesting", "", "[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ("no env", "env", _DELETE, "env is missing"),
    ("no arch", "arch", _DELETE, "arch is missing"),
    ("no observation space", "observation_space", _DELETE, "observation_space is missing"),
    ("no action space", "action_space", _DELETE, "action_space is missing"),
    ("unknown field", "payload", "x", "payload is unknown"),
    ("env a number", "env", 3, "env = 3"),
    ("huge action count", "action_space.n", 10**9, "action_space.n"),
    ("action count a string", "action_space.n", "5", "action_space.n"),
    ("unknown action type", "action_space.type", "multibinary", "action_space.type"),
    ("wide box action", "action_space", {"type": "box", "shape": [10**6], "dtype": "float32",
                                         "low": -1.0, "high": 1.0}, "action_space.shape"),
    ("100,000-pixel image", "env.observation.width", 100_000, "env.observation.width"),
    ("image too small for the CNN", "env.observation.height", 8, "env.observation.height"),
    ("observation space not the env's", "observation_space.shape", [6, 100_000, SIZE],
     "observation_space.shape"),
    ("max_steps 1e9", "env.max_steps", 10**9, "env.max_steps"),
    ("max_steps a float", "env.max_steps", 1e9, "env.max_steps"),
    ("physics substeps", "env.physics_hz", 1e9, "env.physics_hz"),
    ("arena of 10^12 cells", "env.arena_half_size_m", 1e6, "env.arena_half_size_m"),
    ("lidar rays", "env.observation.lidar_rays", 10**8, "env.observation.lidar_rays"),
    ("frame_stack 0", "env.observation.frame_stack", 0, "env.observation.frame_stack"),
    ("frame_stack -1", "env.observation.frame_stack", -1, "env.observation.frame_stack"),
    ("frame_stack 10^6", "env.observation.frame_stack", 10**6, "env.observation.frame_stack"),
    ("frame_stack a bool", "env.observation.frame_stack", True, "env.observation.frame_stack"),
    ("frame_stride 0", "env.observation.frame_stride", 0, "env.observation.frame_stride"),
    ("frame_stride 10^6", "env.observation.frame_stride", 10**6, "env.observation.frame_stride"),
    ("legacy frame_stack 0", "frame_stack", 0, "frame_stack"),
    ("legacy frame_stack -1", "frame_stack", -1, "frame_stack"),
    ("legacy frame_stack disagrees", "frame_stack", 3, "frame_stack"),
    ("legacy continuous disagrees", "continuous", True, "continuous"),
    ("legacy continuous a string", "continuous", "no", "continuous"),
    ("features 10^7", "arch.features_dim", 10**7, "arch.features_dim"),
    ("features a string", "arch.features_dim", "256", "arch.features_dim"),
    ("huge conv channels", "arch.channels", [100_000, 100_000, 100_000], "arch.channels[0]"),
    ("two conv layers", "arch.channels", [8, 16], "arch.channels"),
    ("100 hidden layers", "arch.net_arch", [64] * 100, "arch.net_arch"),
    ("huge hidden layer", "arch.net_arch", [10**9], "arch.net_arch[0]"),
    ("network over the parameter budget", "arch", {"features_dim": 4096,
                                                   "channels": [512, 512, 512],
                                                   "net_arch": [4096] * 8}, "parameters"),
    ("heldout success 7", "heldout_success", 7, "heldout_success"),
    ("timesteps negative", "timesteps", -5, "timesteps"),
    ("method a list", "method", ["x"], "method"),
    ("lidar observation", "env.observation.lidar", True, "env.observation"),
]


@pytest.mark.parametrize("label,field,value,names", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_metadata_is_refused_in_one_line_before_allocation(
        saved: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        label: str, field: str, value: Any, names: str) -> None:
    _, payload = saved
    meta = json.loads(payload["meta"])
    if field == "":
        bad_meta = value if isinstance(value, (str, torch.Tensor)) else json.dumps(value)
    else:
        bad_meta = json.dumps(_set(meta, field, value))
    path = tmp_path / "policy.pt"
    torch.save({**payload, "meta": bad_meta}, path)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a network was built from hostile metadata")

    monkeypatch.setattr(checkpoint, "build_policy", no_network)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert names in message
    assert any(word in message for word in ("allowed", "expected", "must", "needs"))


def test_the_cli_reports_hostile_metadata_in_one_line(saved: tuple[Path, dict[str, Any]],
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    _, payload = saved
    path = tmp_path / "policy.pt"
    torch.save({**payload, "meta": "[]"}, path)
    for command in (["eval", str(path), "--episodes", "1", "--quiet"], ["export", str(path)],
                    ["deploy", str(path), "--duration", "0.5"]):
        assert embodied_cli.main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and "JSON list" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.pt"]  # nothing written


def test_the_reference_checkpoint_in_the_legacy_metadata_form_loads(tmp_path: Path) -> None:
    # Checkpoints written before the frame stack moved into the observation config keep it
    # beside `env`; the reference's weights under that older metadata must load the same.
    payload = torch.load(REFERENCE, weights_only=True)
    raw = json.loads(payload["meta"])
    raw["frame_stack"] = raw["env"]["observation"].pop("frame_stack")
    legacy = tmp_path / "policy.pt"
    torch.save({**payload, "meta": json.dumps(raw)}, legacy)
    assert raw["frame_stack"] == 2 and "frame_stack" not in raw["env"]["observation"]
    loaded = load_checkpoint(legacy)
    np.testing.assert_array_equal(
        loaded.predict(np.zeros((1, 64, 64, 6), np.uint8)),
        load_checkpoint(REFERENCE).predict(np.zeros((1, 64, 64, 6), np.uint8)))
    meta = loaded.meta
    assert meta.frame_stack == 2 and meta.env.observation.frame_stack == 2
    assert meta.image_shape == (64, 64, 6) and not meta.continuous and not loaded.continuous
    assert meta.method == raw["method"] and meta.timesteps == raw["timesteps"]
    assert meta.env_config("heldout").split == "heldout" and meta.env_config().split == "train"
    # The typed metadata writes the new form, which reads back to the same value.
    assert CheckpointMeta.from_json(meta.to_json(), "again") == meta
    assert "frame_stack" not in json.loads(meta.to_json())


def test_save_then_load_keeps_weights_and_metadata(saved: tuple[Path, dict[str, Any]]) -> None:
    path, payload = saved
    loaded = load_checkpoint(path)
    assert loaded.meta.frame_stack == 2 and loaded.meta.method == "distill"
    assert loaded.meta.to_json() == payload["meta"]
    obs = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 6), dtype=np.uint8)
    again = load_checkpoint(path)
    np.testing.assert_array_equal(loaded.predict(obs), again.predict(obs))


def test_save_refuses_metadata_it_could_not_load(tmp_path: Path) -> None:
    policy = build_policy(gym.spaces.Box(0, 255, (3, SIZE, SIZE), np.uint8),
                          gym.spaces.Discrete(5), ARCH)
    with pytest.raises(CheckpointError, match="observation_space.shape"):
        save_checkpoint(tmp_path / "policy.pt", policy, ARCH, {"env": to_dict(CFG)})
    assert list(tmp_path.iterdir()) == []


def test_a_saved_checkpoint_is_not_private_under_umask_022(tmp_path: Path) -> None:
    policy = build_policy(gym.spaces.Box(0, 255, (6, SIZE, SIZE), np.uint8),
                          gym.spaces.Discrete(5), ARCH)
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "policy.pt", policy, ARCH, {"env": to_dict(CFG)})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert torch.load(path, weights_only=True)["format"] == FORMAT
