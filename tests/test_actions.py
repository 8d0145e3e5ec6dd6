"""Deciding a discrete action from the policy's logits: drive or turn in place first."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.config import EnvConfig, ObservationConfig, to_dict
from policies.actions import (
    DRIVES,
    FULL_TURN_STEPS,
    RECOVERY_DRIVES,
    START,
    TURN_WINDOW_STEPS,
    Memory,
    decide,
)
from policies.checkpoint import (
    build_policy,
    load_checkpoint,
    policy_actions,
    save_checkpoint,
    zero_state,
)
from policies.export import OnnxPolicy, actions_from_outputs, export_policy
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


RIGHT_LEANING = [0.05, 0.05, 0.05, 0.40, 0.45]
"""Turning holds 0.85, turning right a little more than left."""


def test_a_turn_in_place_does_not_reverse_the_turn_before() -> None:
    logits = _logits(RIGHT_LEANING, RIGHT_LEANING, RIGHT_LEANING, RIGHT_LEANING, SPREAD)
    memory = Memory.start(5)
    memory.record(np.array([3, 4, 0, 0, 3]), ended=np.array([0, 0, 1, 0, 0], bool))
    np.testing.assert_array_equal(memory.previous, [3, 4, START, 0, 3])
    # left before: it goes on left; right or an episode start or a drive: the likelier turn;
    # a drive is never held back by the turn before
    np.testing.assert_array_equal(decide(logits, memory), [3, 4, 4, 4, 1])
    np.testing.assert_array_equal(decide(logits), [4, 4, 4, 4, 1])
    assert decide(logits, memory).dtype == np.int64
    with pytest.raises(ValueError, match=r"a memory of 2 robots; expected 5"):
        decide(logits, Memory.start(2))
    with pytest.raises(ValueError, match=r"actions of shape \(3,\); expected \(5,\)"):
        memory.record(np.array([3, 4, 0]))


def _turns_until_drive(logits: np.ndarray, memory: Memory) -> list[int]:
    """Decide and record one robot's actions until it has driven `RECOVERY_DRIVES` + 1 steps."""
    taken = []
    while sum(DRIVES[a] for a in taken) <= RECOVERY_DRIVES:
        action = decide(logits, memory)
        memory.record(action)
        taken.append(int(action[0]))
    return taken



def test_a_full_turn_in_place_ends_in_a_recovery_drive() -> None:
    """40 turns at 1.6 rad/s and 10 Hz are one revolution; then the likeliest driving action,
    for RECOVERY_DRIVES steps, whatever the turn holds; then turning again."""
    assert FULL_TURN_STEPS == 40
    logits = _logits([0.05, 0.02, 0.03, 0.85, 0.05])  # turning left, forward its best drive
    taken = _turns_until_drive(logits, Memory.start(1))
    assert taken == [3] * FULL_TURN_STEPS + [0] * RECOVERY_DRIVES + [3] * FULL_TURN_STEPS + [0]
    # an episode that ends forgets the count and any drive still due
    memory = Memory.start(2)
    for _ in range(FULL_TURN_STEPS + 1):
        memory.record(np.array([3, 3]))
    assert memory.due().all() and memory.recovering[0] == RECOVERY_DRIVES - 1
    memory.record(np.array([0, 0]), ended=np.array([True, False]))
    np.testing.assert_array_equal(memory.due(), [False, True])
    np.testing.assert_array_equal(decide(np.vstack([logits, logits]), memory), [3, 0])


def _recorded(actions: list[int]) -> Memory:
    memory = Memory.start(1)
    for action in actions:
        memory.record(np.array([action]))
    return memory


def test_turns_count_towards_a_revolution_within_the_window() -> None:
    """The loop the window catches: nearly a revolution in place, a few drives, round again.
    Turns in a row would restart at every drive and never reach a revolution."""
    assert TURN_WINDOW_STEPS == 60
    loop = [3] * (FULL_TURN_STEPS - 5) + [1] * 4
    memory = _recorded(loop)
    assert memory.turning[0] == FULL_TURN_STEPS - 5 and not memory.due()[0]
    memory = _recorded(loop + [3] * 5)
    assert memory.due()[0]
    logits = _logits([0.05, 0.30, 0.03, 0.60, 0.02])
    assert int(decide(logits, memory)[0]) == 1  # its likeliest drive, not its likelier turn
    # turns older than the window no longer count: 20 turns, 40 drives, 20 turns is 20 in it
    memory = _recorded([3] * 20 + [0] * 40 + [3] * 20)
    assert memory.turning[0] == 20 and not memory.due()[0]
    # a recovery spends the turns that led to it: after its drives, counting starts again
    memory = _recorded([3] * FULL_TURN_STEPS + [0] * RECOVERY_DRIVES + [3] * 10)
    assert memory.turning[0] == 10 and not memory.due()[0]


def _fixed_head_checkpoint(tmp_path: Path, probs: list[float]) -> Path:
    """A tiny feed-forward checkpoint whose logits are log(probs) whatever it sees."""
    arch = {"features_dim": 16, "channels": [4, 8, 8], "net_arch": [16]}
    cfg = EnvConfig(observation=ObservationConfig(width=36, height=36, frame_stack=2))
    policy = build_policy(gym.spaces.Box(0, 255, (6, 36, 36), np.uint8),
                          gym.spaces.Discrete(5), arch)
    with torch.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.bias.copy_(torch.as_tensor(_logits(probs)[0]))
    return save_checkpoint(tmp_path / "policy.pt", policy, arch,
                           {"env": to_dict(cfg), "method": "distill", "timesteps": 1})


def test_the_policy_and_the_onnx_runner_hold_a_turn_until_reset(tmp_path: Path) -> None:
    """Both keep the action they decided last and forget it at an episode start."""
    path = _fixed_head_checkpoint(tmp_path, RIGHT_LEANING)
    loaded = load_checkpoint(path)
    frame = np.random.default_rng(0).integers(0, 256, (36, 36, 6), dtype=np.uint8)
    assert int(loaded.predict(frame)) == 4
    loaded.memory.record(np.array([3]))  # as if it had just turned left
    assert [int(loaded.predict(frame)) for _ in range(3)] == [3, 3, 3]
    loaded.reset()
    assert int(loaded.predict(frame)) == 4
    # turning right on and on, it drives after a revolution, forward being its likeliest drive
    decided = [int(loaded.predict(frame)) for _ in range(FULL_TURN_STEPS)]
    assert decided == [4] * (FULL_TURN_STEPS - 1) + [0]
    # a batch of another size starts afresh; a stochastic action leaves nothing to hold
    np.testing.assert_array_equal(loaded.predict(np.stack([frame, frame])), [4, 4])
    loaded.predict(frame, deterministic=False)
    assert loaded.memory is None

    onnx = OnnxPolicy(export_policy(path, "onnx", tmp_path / "policy.onnx",
                                     check_obs=frame[None])["path"])
    assert onnx.act(frame) == 4
    onnx.memory.record(np.array([3]))
    assert [onnx.act(frame) for _ in range(3)] == [3, 3, 3]
    onnx.reset()
    assert [onnx.act(frame) for _ in range(FULL_TURN_STEPS + 1)] == [4] + decided


def test_the_pytorch_policy_and_the_onnx_runner_decide_alike(tmp_path: Path) -> None:
    """A policy whose head always outputs SPREAD: the loaded checkpoint drives forward-left
    where SB3's own deterministic predict (the argmax) turns left."""
    loaded = load_checkpoint(_fixed_head_checkpoint(tmp_path, SPREAD))
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


def test_dagger_rollouts_pass_each_env_its_previous_action(monkeypatch) -> None:
    """With drive-or-turn rollouts, every env's memory of its executed actions reaches the
    decision, and an env whose episode just ended starts again from `START`."""
    import dataclasses

    from training import distill as distill_module
    from training.bench import _RateHooks
    from training.config import load_config

    seen: list[np.ndarray | None] = []

    def recording(*args, memory=None, **kwargs):
        seen.append(None if memory is None else memory.previous.copy())
        return policy_actions(*args, memory=memory, **kwargs)

    monkeypatch.setattr(distill_module, "policy_actions", recording)
    cfg = load_config("tiny", ["distill.rollout_decision=drive_or_turn"])
    cfg = dataclasses.replace(cfg, distill=dataclasses.replace(
        cfg.distill, expert_iterations=0, beta_decay_iterations=1))
    distill_module.distill(cfg, _RateHooks(), torch.device("cpu"))
    assert len(seen) == cfg.distill.total_timesteps // cfg.n_envs
    assert (seen[0] == START).all()  # every env starts an episode
    later = np.stack(seen[1:])
    assert later.shape == (len(seen) - 1, cfg.n_envs)
    assert set(np.unique(later)) <= {START, 0, 1, 2, 3, 4}
    # episodes of env.max_steps end inside the run: their next step starts afresh
    assert (later == START).any() and (later != START).any()
