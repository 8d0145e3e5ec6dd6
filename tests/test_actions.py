"""Deciding a discrete action from the policy's logits: drive or turn in place first."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.config import EnvConfig, ObservationConfig, to_dict
from policies.actions import decide
from policies.checkpoint import (
    build_policy,
    load_checkpoint,
    policy_actions,
    save_checkpoint,
    zero_state,
)
from policies.export import actions_from_outputs
from training.config import ConfigError, DistillConfig, TrainConfig

SPREAD = [0.26, 0.30, 0.03, 0.41, 0.0]
"""A student's probabilities where the plan leads away from a goal it just saw: turning left
is the single likeliest action, driving on holds more probability (0.59)."""


def _logits(*probs: list[float]) -> np.ndarray:
    return np.log(np.maximum(np.asarray(probs, dtype=float), 1e-9))


def test_the_likelier_group_decides_before_the_likeliest_action() -> None:
    logits = _logits(SPREAD,
                     [0.10, 0.10, 0.10, 0.60, 0.10],   # turning holds 0.70: turn left
                     [0.50, 0.10, 0.10, 0.20, 0.10],   # plainly forward
                     [0.05, 0.05, 0.30, 0.25, 0.35],   # drive 0.40 < turn 0.60: turn right
                     [0.25, 0.25, 0.00, 0.50, 0.00])   # a tie goes to turning
    np.testing.assert_array_equal(decide(logits), [1, 3, 0, 4, 3])
    assert np.argmax(logits[0]) == 3  # where the plain argmax would spin
    # logits are unnormalised: a shift changes nothing
    np.testing.assert_array_equal(decide(logits + 7.0), decide(logits))
    assert decide(logits).dtype == np.int64


def test_logits_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match=r"expected \(N, 5\)"):
        decide(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"expected \(N, 5\)"):
        decide(np.zeros(5))


def test_the_pytorch_policy_and_the_onnx_runner_decide_alike(tmp_path: Path) -> None:
    """A policy whose head always outputs SPREAD: the loaded checkpoint drives forward-left
    where SB3's own deterministic predict (the argmax) turns left."""
    arch = {"features_dim": 16, "channels": [4, 8, 8], "net_arch": [16]}
    cfg = EnvConfig(observation=ObservationConfig(width=36, height=36, frame_stack=2))
    policy = build_policy(gym.spaces.Box(0, 255, (6, 36, 36), np.uint8),
                          gym.spaces.Discrete(5), arch)
    with torch.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.bias.copy_(torch.as_tensor(_logits(SPREAD)[0]))
    path = save_checkpoint(tmp_path / "policy.pt", policy, arch,
                           {"env": to_dict(cfg), "method": "distill", "timesteps": 1})
    loaded = load_checkpoint(path)
    frames = np.random.default_rng(0).integers(0, 256, (3, 36, 36, 6), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict(frames), [1, 1, 1])
    assert int(loaded.predict(frames[0])) == 1
    sb3_action, _ = loaded.policy.predict(frames[0].transpose(2, 0, 1), deterministic=True)
    assert int(sb3_action) == 3
    # the exported model's runner decides from the same logits the same way
    np.testing.assert_array_equal(actions_from_outputs(_logits(SPREAD, SPREAD), False), [1, 1])


@pytest.mark.parametrize("lstm_hidden", [0, 8])
def test_dagger_rollouts_act_by_the_configured_decision(lstm_hidden: int) -> None:
    """`distill.rollout_decision`: the same SPREAD head turns left by argmax and drives
    forward-left by drive-or-turn, feed-forward or recurrent (whose state moves on)."""
    arch = {"features_dim": 16, "channels": [4, 8, 8], "net_arch": [16],
            "lstm_hidden": lstm_hidden}
    policy = build_policy(gym.spaces.Box(0, 255, (6, 36, 36), np.uint8),
                          gym.spaces.Discrete(5), arch)
    with torch.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.bias.copy_(torch.as_tensor(_logits(SPREAD)[0]))
    images = torch.randint(0, 256, (2, 6, 36, 36), dtype=torch.uint8)
    state = zero_state(policy, 2) if lstm_hidden else None
    starts = torch.ones(2)
    for decision, expected in (("argmax", [3, 3]), ("drive_or_turn", [1, 1])):
        actions, new_state = policy_actions(policy, images, state, starts,
                                            drive_or_turn=decision == "drive_or_turn")
        np.testing.assert_array_equal(actions, expected)
        assert (new_state is None) == (lstm_hidden == 0)
        if lstm_hidden:
            assert not torch.equal(new_state[0], state[0])


def test_an_unknown_rollout_decision_is_refused() -> None:
    with pytest.raises(ConfigError, match="rollout_decision: 'sample'; use one of argmax"):
        TrainConfig(distill=DistillConfig(rollout_decision="sample"))
