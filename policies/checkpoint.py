"""The checkpoint format shared by every training method, evaluation, export and deployment.

A checkpoint is one file written by `torch.save` holding only tensors and strings:
`{"format": FORMAT, "meta": <JSON string>, "state_dict": {name: tensor}}`. It is read with
`torch.load(weights_only=True)`, so loading never executes pickled code.

`meta` is a `policies.metadata.CheckpointMeta`: the env config the policy was trained in (its
observation, frame stack included, defines what the policy can see), the network's shape, the
action type and a few training facts, checked against sane bounds before the network is built.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib.common.recurrent.policies import (
    RecurrentActorCriticCnnPolicy,
    RecurrentActorCriticPolicy,
)
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy

import rundir
from policies.actions import Memory, decide
from policies.metadata import CheckpointError, CheckpointMeta
from policies.networks import CameraCNN

FORMAT = "embodied-policy-v1"
CHECKPOINT_NAME = rundir.POLICY_FILE

__all__ = ["CHECKPOINT_NAME", "FORMAT", "CheckpointError", "CheckpointMeta", "LoadedPolicy",
           "build_policy", "file_sha256", "is_recurrent", "load_checkpoint", "policy_actions",
           "policy_kwargs",
           "resolve_checkpoint", "save_checkpoint", "zero_state"]


# ---------------------------------------------------------------------------- the network


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


def build_policy(observation_space: gym.Space, action_space: gym.Space,
                 arch: Mapping[str, Any]) -> ActorCriticPolicy:
    """A fresh SB3 camera policy (channel-first image observations).

    With `arch["lstm_hidden"] > 0` it is sb3-contrib's `RecurrentActorCriticCnnPolicy`: the
    same CNN, then an LSTM for the actor only (the critic reads the features through a linear
    layer), then the same MLP heads.
    """
    kwargs = policy_kwargs(arch["features_dim"], tuple(arch["channels"]),
                           tuple(arch["net_arch"]))
    lstm_hidden = int(arch.get("lstm_hidden", 0))
    if lstm_hidden > 0:
        return RecurrentActorCriticCnnPolicy(observation_space, action_space, lambda _: 0.0,
                                             lstm_hidden_size=lstm_hidden,
                                             enable_critic_lstm=False, **kwargs)
    return ActorCriticCnnPolicy(observation_space, action_space, lambda _: 0.0, **kwargs)


def is_recurrent(policy: ActorCriticPolicy) -> bool:
    """Whether `policy` carries an LSTM state from step to step."""
    return isinstance(policy, RecurrentActorCriticPolicy)


def zero_state(policy: ActorCriticPolicy, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM's (hidden, cell) state at the start of an episode, for `batch` envs."""
    layers, _, hidden = policy.lstm_hidden_state_shape
    zeros = torch.zeros((layers, batch, hidden), device=policy.device)
    return zeros, zeros.clone()


def policy_actions(policy: ActorCriticPolicy, chw: torch.Tensor,
                   state: tuple[torch.Tensor, torch.Tensor] | None, starts: torch.Tensor | None,
                   deterministic: bool = True, drive_or_turn: bool = True,
                   memory: Memory | None = None):
    """Actions for a batch of (N, C, H, W) images, and the next LSTM state (`state` None: a
    feed-forward policy, and None back). A deterministic discrete action is decided drive or
    turn first (`policies.actions.decide`, given each robot's `memory` of its episode) unless
    `drive_or_turn` is off (the argmax); the caller records the actions taken in `memory`."""
    with torch.no_grad():
        if state is not None:
            dist, state = policy.get_distribution(chw, state, starts)
        else:
            dist = policy.get_distribution(chw)
        discrete = isinstance(policy.action_space, gym.spaces.Discrete)
        if discrete and deterministic and drive_or_turn:
            actions = decide(dist.distribution.logits.cpu().numpy(), memory)
        else:
            actions = dist.get_actions(deterministic=deterministic).cpu().numpy()
    return actions, state


# ---------------------------------------------------------------------------- files


def save_checkpoint(path: str | os.PathLike, policy: ActorCriticPolicy, arch: Mapping[str, Any],
                    meta: Mapping[str, Any]) -> Path:
    """Write policy weights and metadata atomically (`rundir.atomic_write`).

    `meta` holds `env` (the env config as a dict) and any training facts (`method`,
    `timesteps`, `seed`, `heldout_success`, `heldout_spl`); a `frame_stack` beside `env` is
    moved into `env.observation`. The spaces and `arch` are added here, and the whole is
    checked as `load_checkpoint` will check it, so a checkpoint that could not be loaded is
    never written.
    """
    path = Path(path)
    meta = dict(meta)
    env = meta.get("env")
    if "frame_stack" in meta and isinstance(env, Mapping) \
            and isinstance(env.get("observation", {}), Mapping):
        # The older spelling of this call: the frame stack beside the env, not inside it.
        observation = {**env.get("observation", {}), "frame_stack": meta.pop("frame_stack")}
        meta["env"] = {**env, "observation": observation}
    full = {**meta, "arch": dict(arch),
            "observation_space": _space_to_json(policy.observation_space),
            "action_space": _space_to_json(policy.action_space)}
    parsed = CheckpointMeta.from_dict(json.loads(json.dumps(full)), path)
    payload = {
        "format": FORMAT,
        "meta": parsed.to_json(),
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
    }
    return rundir.atomic_write(path, lambda tmp: torch.save(payload, tmp))


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (ties an exported model to its checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_checkpoint(target: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory (its final, else best, policy:
    `rundir.POLICY_DIRS`)."""
    target = Path(target)
    if target.is_dir():
        names = (*(f"{name}/{CHECKPOINT_NAME}" for name in rundir.POLICY_DIRS),
                 CHECKPOINT_NAME)
        for name in names:
            if (target / name).is_file():
                return target / name
        raise CheckpointError(f"{target} holds no checkpoint (looked for {names[0]}, "
                              f"{names[1]}); train first or pass a .pt file")
    if not target.is_file():
        raise CheckpointError(f"checkpoint {target} does not exist; pass a .pt file or a run "
                              "directory")
    return target


@dataclass
class LoadedPolicy:
    """A camera policy ready to act on (H, W, C) uint8 observations.

    A recurrent policy keeps its LSTM state here between `predict` calls, and a discrete one
    a memory of the actions it decided (`policies.actions.decide` reads it): call `reset()` at
    the start of every episode.
    """

    policy: ActorCriticPolicy
    meta: CheckpointMeta | None
    """What its checkpoint says; None for a policy still in training."""
    path: Path
    state: tuple[torch.Tensor, torch.Tensor] | None = None
    """A recurrent policy's LSTM state after the last `predict` (None: an episode starts)."""
    memory: Memory | None = None
    """What the deterministic `predict` calls decided so far in the episode (None: an episode
    starts); `policies.actions.decide` reads it."""

    @property
    def continuous(self) -> bool:
        return isinstance(self.policy.action_space, gym.spaces.Box)

    @property
    def recurrent(self) -> bool:
        return is_recurrent(self.policy)

    def reset(self) -> None:
        """Forget the episode so far: the next `predict` starts from the zero state and an
        empty memory of actions."""
        self.state = None
        self.memory = None

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch (N, H, W, C) or a single (H, W, C) observation."""
        single = obs.ndim == 3
        batch = obs[None] if single else obs
        chw = torch.as_tensor(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)),
                              device=self.policy.device)
        starts = None
        if self.recurrent:
            if self.state is None or self.state[0].shape[1] != len(batch):
                self.state = zero_state(self.policy, len(batch))
            # the state is zeroed by reset(), so no step here is flagged as a start
            starts = torch.zeros(len(batch), device=self.policy.device)
        remembers = deterministic and not self.continuous
        if not remembers:
            self.memory = None  # a stochastic action leaves no decision to remember
        elif self.memory is None or len(self.memory) != len(batch):
            self.memory = Memory.start(len(batch))  # a batch of another size: every robot starts
        # drive or turn first, as the exported model's runner decides
        actions, self.state = policy_actions(self.policy, chw, self.state, starts,
                                             deterministic, memory=self.memory)
        if self.continuous:
            actions = np.clip(actions, -1.0, 1.0)
        elif remembers:
            self.memory.record(actions)
        return actions[0] if single else actions


def load_checkpoint(target: str | os.PathLike, device: str = "cpu") -> LoadedPolicy:
    """Load a checkpoint file or run directory (weights only: no pickled code runs).

    Raises:
        CheckpointError: no checkpoint, an unreadable or foreign file, metadata out of bounds
            (one line naming the file and the field), or weights that do not fit it.
    """
    path = resolve_checkpoint(target)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}); "
                              "pass a policy.pt written by embodied train") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an {FORMAT} checkpoint")
    meta = CheckpointMeta.from_json(payload.get("meta"), path)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: state_dict is missing; re-save it with embodied train")
    policy = build_policy(meta.observation_space(), meta.action_space(), meta.arch.as_dict())
    try:
        policy.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the stored architecture "
                              f"({str(err).splitlines()[0][:120]})") from None
    policy.set_training_mode(False)
    return LoadedPolicy(policy.to(device), meta, path)
