"""The recurrent (LSTM) student: sequence sampling, training, checkpoint, export with the state
as explicit inputs and outputs, and the state reset at every episode start."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import embodied_cli
from envs.config import ConfigError
from eval.bench_deploy import BACKENDS, _runners, bench_infer
from policies.checkpoint import load_checkpoint
from policies.deploy.messages import Image, UInt32, image_to_msg
from policies.deploy.node import Context, Node, SingleThreadedExecutor
from policies.deploy.nodes import TOPIC_EPISODE, TOPIC_IMAGE, PolicyNode
from policies.export import STATE_INPUTS, OnnxPolicy, export_policy, record_observations
from policies.metadata import ArchSpec
from training.config import load_config
from training.distill import SequenceBuffer
from training.train import train

LSTM = ["arch.lstm_hidden=16", "distill.sequence_length=8", "distill.burn_in=2"]


@pytest.fixture(scope="module")
def recurrent_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "lstm"
    argv = ["train", "--config", "tiny", "--run-dir", str(run_dir), "--quiet", *LSTM]
    assert embodied_cli.main(argv) == 0
    return run_dir


# ---------------------------------------------------------------------------- sequences


def _buffer(starts_env0: list[int], capacity_steps: int = 12) -> SequenceBuffer:
    """Two envs; step t of env 0 holds label t and the given start flags, env 1 label 100 + t."""
    buffer = SequenceBuffer(2 * capacity_steps, 2, (1, 1, 1), (), np.int64)
    for t, start in enumerate(starts_env0):
        buffer.add(np.zeros((2, 1, 1, 1), np.uint8), np.array([t, 100 + t]),
                   np.array([start, 0], np.float32))
    return buffer


def test_sequences_are_consecutive_steps_of_one_env_and_never_cross_the_write_position():
    buffer = _buffer([1] + [0] * 19, capacity_steps=12)  # wrapped: steps 8..19 are kept
    rng = np.random.default_rng(0)
    for _ in range(50):
        _, actions, _ = buffer.sample(rng, n_seq=4, length=5, burn_in=0)
        for seq in actions.reshape(4, 5):
            base = 100 if seq[0] >= 100 else 0
            assert np.array_equal(seq - base, np.arange(seq[0] - base, seq[0] - base + 5))
            assert seq[0] - base >= 8 and seq[-1] - base <= 19


def test_loss_mask_skips_the_burn_in_and_everything_after_a_reset():
    # env 0: an episode starts at step 0 and the next at step 6
    buffer = _buffer([1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    windows = {}
    rng = np.random.default_rng(1)
    for _ in range(400):
        _, actions, keep = buffer.sample(rng, n_seq=1, length=5, burn_in=2)
        if actions[0] < 100:
            windows[int(actions[0])] = keep.tolist()
    # from an episode's first frame the zero state is the true one: no burn-in
    assert windows[0] == [True] * 5
    assert windows[6] == [True] * 5
    # mid-episode: two burn-in steps, then loss until the next episode's first frame
    assert windows[1] == [False, False, True, True, True]
    assert windows[3] == [False, False, True, False, False]
    assert windows[4] == [False, False, False, False, False]


# ---------------------------------------------------------------------------- config, metadata


@pytest.mark.parametrize("overrides, field", [
    (["arch.lstm_hidden=16", "method=ppo"], "arch.lstm_hidden"),
    (["arch.lstm_hidden=16", "finetune.timesteps=64"], "arch.lstm_hidden"),
    (["arch.lstm_hidden=16", "distill.sequence_length=4", "distill.burn_in=4"], "burn_in"),
])
def test_impossible_recurrent_settings_are_refused_naming_the_setting(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_config("tiny", overrides)


def test_feed_forward_metadata_keeps_its_first_release_form():
    assert "lstm_hidden" not in ArchSpec(32, (8, 16, 16), (32,)).as_dict()
    assert ArchSpec(32, (8, 16, 16), (32,), 16).as_dict()["lstm_hidden"] == 16


def test_checkpoint_rebuilds_the_lstm_and_counts_its_weights(recurrent_run: Path):
    loaded = load_checkpoint(recurrent_run)
    assert loaded.recurrent and loaded.meta.arch.lstm_hidden == 16
    weights = sum(p.numel() for p in loaded.policy.parameters())
    assert weights == loaded.meta.arch.parameter_count(loaded.meta.observation_space().shape,
                                                       loaded.meta.n_outputs)


# ---------------------------------------------------------------------------- memory and resets


def test_training_is_deterministic_under_a_seed(tmp_path: Path):
    weights = []
    for k in range(2):
        result = train(load_config("tiny", ["eval.every_timesteps=0", *LSTM]),
                       tmp_path / f"r{k}", quiet=True)
        weights.append(torch.load(result.final_checkpoint, weights_only=True)["state_dict"])
    assert any("lstm_actor" in key for key in weights[0])
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_loaded_policy_remembers_within_an_episode_and_forgets_at_reset(recurrent_run: Path):
    loaded = load_checkpoint(recurrent_run)
    frames, _ = record_observations(loaded, steps=6)
    with torch.no_grad():
        loaded.policy.lstm_actor.bias_hh_l0.add_(0.5)  # make sure the state moves the output
    loaded.reset()
    first = [loaded.predict(f) for f in frames]
    state_after = loaded.state[0].clone()
    loaded.reset()
    again = [loaded.predict(f) for f in frames]
    assert np.array_equal(first, again)
    assert torch.equal(state_after, loaded.state[0])
    assert not torch.equal(state_after, torch.zeros_like(state_after))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_carries_the_state_and_matches_pytorch_over_whole_episodes(
        recurrent_run: Path, tmp_path: Path, fmt: str):
    out = tmp_path / ("policy.onnx" if fmt == "onnx" else "policy.ts")
    report = export_policy(recurrent_run, fmt, out=out)
    assert report["state"]["inputs"] == list(STATE_INPUTS)
    assert "whole episodes" in report["obs_source"]
    assert report["max_abs_diff"] < 1e-4 and report["action_agreement"] == 1.0


def test_onnx_policy_state_flows_from_step_to_step_and_resets(recurrent_run: Path,
                                                               tmp_path: Path):
    policy = OnnxPolicy(export_policy(recurrent_run, "onnx", out=tmp_path / "p.onnx")["path"])
    loaded = load_checkpoint(recurrent_run)
    frames, _ = record_observations(loaded, steps=5)
    policy.reset()
    outputs = [policy.forward(f[None]) for f in frames]
    assert policy.state is not None and np.any(policy.state[0] != 0)
    policy.reset()
    np.testing.assert_allclose(policy.forward(frames[0][None]), outputs[0], atol=1e-6)
    # the same frame after a different history gives another state
    h_fresh = policy.state[0].copy()
    policy.forward(frames[1][None])
    policy.forward(frames[0][None])
    assert not np.allclose(policy.state[0], h_fresh)


def test_deploy_policy_node_starts_every_episode_from_the_zero_state(recurrent_run: Path,
                                                                     tmp_path: Path):
    policy = OnnxPolicy(export_policy(recurrent_run, "onnx", out=tmp_path / "p.onnx")["path"])
    frames, _ = record_observations(load_checkpoint(recurrent_run), steps=4)
    states_in: list[np.ndarray | None] = []
    forward = policy.forward

    def spy(batch: np.ndarray) -> np.ndarray:
        states_in.append(None if policy.state is None else policy.state[0].copy())
        return forward(batch)

    policy.forward = spy
    context, executor = Context(), SingleThreadedExecutor()
    executor.add_node(PolicyNode(context, policy))
    camera = Node("camera", context)
    image_pub = camera.create_publisher(Image, TOPIC_IMAGE, 5)
    episode_pub = camera.create_publisher(UInt32, TOPIC_EPISODE, 5)
    for episode in range(2):
        episode_pub.publish(UInt32(data=episode))
        for frame in frames:
            image_pub.publish(image_to_msg(frame, 0, "cam"))
            executor.spin_once(timeout_sec=0.0)
    assert len(states_in) == 8
    assert states_in[0] is None and states_in[4] is None  # zeroed at each episode's first frame
    assert all(s is not None for i, s in enumerate(states_in) if i % 4)


def test_inference_benchmark_backends_carry_the_state_and_choose_the_same_actions(
        recurrent_run: Path, tmp_path: Path):
    frames, _ = record_observations(load_checkpoint(recurrent_run), steps=12)
    runners, info = _runners(recurrent_run, frames, tmp_path)
    actions = {name: [int(np.argmax(np.asarray(runners[name](f)))) if name != "sb3_predict"
                      else int(runners[name](f)) for f in frames] for name in BACKENDS}
    assert all(actions[name] == actions["sb3_predict"] for name in BACKENDS), actions
    assert info["arch"]["lstm_hidden"] == 16
    # each exported backend carried its state: frame 0 after twelve frames of history is not
    # frame 0 seen fresh
    fresh = OnnxPolicy(tmp_path / "policy.onnx").forward(frames[0][None])
    for name in ("torch", "torchscript", "onnxruntime"):
        assert not np.allclose(np.asarray(runners[name](frames[0])), fresh, atol=1e-6), name


def test_inference_benchmark_times_every_backend_of_a_recurrent_policy(recurrent_run: Path):
    report = bench_infer(recurrent_run, n=5, warmup=1)
    assert set(report["backends"]) == set(BACKENDS)
    assert all(r["p50_ms"] > 0 for r in report["backends"].values())
    assert report["parity"]["onnx"]["action_agreement"] == 1.0


def test_recurrent_run_evaluates_through_the_cli(recurrent_run: Path, tmp_path: Path):
    out = tmp_path / "eval"
    argv = ["eval", str(recurrent_run), "--episodes", "2", "--out", str(out)]
    assert embodied_cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"]["episodes"] == 2 and summary["policy"]["errors"] == 0
