"""The checkpoint format shared by every training method, evaluation, export and deployment.

A checkpoint is one file written by `torch.save` holding only tensors and strings:
`{"format": FORMAT, "meta": <JSON string>, "state_dict": {name: tensor}}`. It is read with
`torch.load(weights_only=True)`, so loading never executes pickled code. `meta` holds what is
needed to rebuild the network (spaces, policy kwargs) and the env config it was trained on.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy

from policies.networks import CameraCNN

FORMAT = "embodied-policy-v1"
CHECKPOINT_NAME = "policy.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not in this project's format."""


def policy_kwargs(features_dim: int = 256, channels: tuple[int, int, int] = (32, 64, 64),
                  net_arch: tuple[int, ...] = (128,)) -> dict[str, Any]:
    """SB3 `policy_kwargs` for the camera policy (also stored in checkpoints)."""
    return {
        "features_extractor_class": CameraCNN,
        "features_extractor_kwargs": {"features_dim": features_dim, "channels": tuple(channels)},
        "net_arch": {"pi": list(net_arch), "vf": list(net_arch)},
    }


def _space_to_json(space: gym.Space) -> dict:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": float(np.min(space.low)), "high": float(np.max(space.high))}
    raise CheckpointError(f"unsupported space {space}")


def _space_from_json(d: dict) -> gym.Space:
    if d["type"] == "discrete":
        return gym.spaces.Discrete(d["n"])
    return gym.spaces.Box(d["low"], d["high"], tuple(d["shape"]), np.dtype(d["dtype"]))


def build_policy(observation_space: gym.Space, action_space: gym.Space,
                 arch: dict[str, Any]) -> ActorCriticPolicy:
    """A fresh SB3 camera policy (channel-first image observations)."""
    kwargs = policy_kwargs(arch["features_dim"], tuple(arch["channels"]),
                           tuple(arch["net_arch"]))
    return ActorCriticCnnPolicy(observation_space, action_space, lambda _: 0.0, **kwargs)


def save_checkpoint(path: str | os.PathLike, policy: ActorCriticPolicy, arch: dict[str, Any],
                    meta: dict[str, Any]) -> Path:
    """Write policy weights and metadata atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    full_meta = {
        **meta,
        "arch": arch,
        "observation_space": _space_to_json(policy.observation_space),
        "action_space": _space_to_json(policy.action_space),
    }
    payload = {
        "format": FORMAT,
        "meta": json.dumps(full_meta, sort_keys=True),
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def resolve_checkpoint(target: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory (its best, else final, policy)."""
    target = Path(target)
    if target.is_dir():
        for name in ("best/" + CHECKPOINT_NAME, "final/" + CHECKPOINT_NAME, CHECKPOINT_NAME):
            if (target / name).is_file():
                return target / name
        raise CheckpointError(f"{target} holds no checkpoint (looked for best/{CHECKPOINT_NAME}, "
                              f"final/{CHECKPOINT_NAME}); train first or pass a .pt file")
    if not target.is_file():
        raise CheckpointError(f"checkpoint {target} does not exist; pass a .pt file or a run "
                              "directory")
    return target


@dataclass
class LoadedPolicy:
    """A camera policy ready to act on (H, W, C) uint8 observations."""

    policy: ActorCriticPolicy
    meta: dict[str, Any]
    path: Path

    @property
    def continuous(self) -> bool:
        return self.meta["action_space"]["type"] == "box"

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch (N, H, W, C) or a single (H, W, C) observation."""
        single = obs.ndim == 3
        batch = obs[None] if single else obs
        chw = torch.as_tensor(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)),
                              device=self.policy.device)
        with torch.no_grad():
            actions = self.policy._predict(chw, deterministic).cpu().numpy()
        if self.continuous:
            actions = np.clip(actions, -1.0, 1.0)
        return actions[0] if single else actions


def load_checkpoint(target: str | os.PathLike, device: str = "cpu") -> LoadedPolicy:
    """Load a checkpoint file or run directory (weights only: no pickled code runs)."""
    path = resolve_checkpoint(target)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}); "
                              "pass a policy.pt written by embodied train") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an {FORMAT} checkpoint")
    meta = json.loads(payload["meta"])
    policy = build_policy(_space_from_json(meta["observation_space"]),
                          _space_from_json(meta["action_space"]), meta["arch"])
    try:
        policy.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the stored architecture "
                              f"({str(err).splitlines()[0][:120]})") from None
    policy.set_training_mode(False)
    return LoadedPolicy(policy.to(device), meta, path)
