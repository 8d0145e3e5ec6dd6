"""Continuous control end to end: `continuous=true` trains CameraNavContinuous-v0 by both
methods, and evaluation, video, ONNX export and the deploy loop run on the result."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import rundir
from envs.config import ConfigError, to_dict
from eval.record import record_video
from eval.report import evaluate_all
from policies.checkpoint import load_checkpoint
from policies.deploy.loop import run_deploy
from policies.deploy.messages import Image, Twist, image_to_msg, twist_to_action
from policies.deploy.node import Context, Node, SingleThreadedExecutor
from policies.deploy.nodes import TOPIC_CMD, TOPIC_IMAGE, PolicyNode
from policies.export import OnnxPolicy, export_policy
from training.config import load_config
from training.distill import imitation_loss, make_student
from training.resume import ResumeError
from training.teacher import teacher_layers, teacher_path
from training.train import _load_teacher, train

BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("continuous") / "distill"
    train(load_config("tiny", ["env.continuous=true"]), run_dir, quiet=True)
    return run_dir


# ---------------------------------------------------------------------------- config


def test_env_continuous_and_continuous_are_one_setting() -> None:
    assert load_config("tiny", ["env.continuous=true"]).continuous is True
    assert load_config("tiny", ["continuous=true"]).continuous is True
    assert load_config("tiny").continuous is False
    # in a preset or a saved config, under env: or at the top level
    assert load_config(None, base={"env": {"continuous": True}}).continuous is True
    with pytest.raises(ConfigError, match="env.continuous: True disagrees with continuous"):
        load_config(None, base={"continuous": False, "env": {"continuous": True}})


def test_continuous_preset_is_the_default_recipe_with_continuous_actions() -> None:
    preset = load_config("continuous")
    assert preset.continuous and preset.method == "distill" and preset.time_budget_s == 1200
    assert preset == dataclasses.replace(load_config("default"), continuous=True)


# ---------------------------------------------------------------------------- training


def test_distilled_run_is_a_continuous_policy(distilled: Path) -> None:
    summary = rundir.read_json(distilled / rundir.TRAIN_SUMMARY_FILE)
    assert summary["continuous"] is True and summary["timesteps"] >= 128
    for name in (rundir.FINAL_DIR, rundir.BEST_DIR):
        loaded = load_checkpoint(distilled / name / "policy.pt")
        assert loaded.continuous and loaded.policy.action_space == BOX
        assert loaded.meta.to_dict()["action_space"]["type"] == "box"
    action = load_checkpoint(distilled).predict(np.zeros((40, 40, 3), np.uint8))
    assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)


def test_ppo_trains_the_continuous_env(tmp_path: Path) -> None:
    result = train(load_config("tiny", ["method=ppo", "continuous=true"]), tmp_path / "ppo",
                   quiet=True)
    loaded = load_checkpoint(result.final_checkpoint)
    assert loaded.continuous and loaded.meta.method == "ppo"
    assert result.summary["timesteps"] >= 128


def test_ppo_teacher_distils_into_a_continuous_student(tmp_path: Path) -> None:
    cfg = load_config("tiny", ["continuous=true", "distill.teacher=ppo",
                               "distill.teacher_timesteps=64", "eval.every_timesteps=0"])
    result = train(cfg, tmp_path / "lbc", quiet=True)
    saved = torch.load(teacher_path(result.run_dir), weights_only=True)
    assert saved["n_out"] == 2  # (linear, angular), not five logits
    assert load_checkpoint(result.final_checkpoint).continuous
    teacher = _load_teacher(cfg, result.run_dir)  # what a resumed run would label with
    label = teacher(np.zeros(saved["state_size"], np.float32))
    assert label.shape == (2,) and label.dtype == np.float32 and np.all(np.abs(label) <= 1.0)


def test_a_discrete_teacher_is_refused_by_a_continuous_resume(tmp_path: Path) -> None:
    net = torch.nn.Sequential(*teacher_layers(10, 5))
    path = teacher_path(tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": net.state_dict(), "state_size": 10, "n_out": 5}, path)
    with pytest.raises(ResumeError, match="5 action outputs, not the 2 of this continuous run"):
        _load_teacher(load_config("tiny", ["continuous=true"]), tmp_path)


def test_continuous_imitation_fits_the_std_without_moving_the_mean() -> None:
    cfg = load_config("tiny", ["continuous=true"])
    student = make_student(cfg, torch.device("cpu"))
    obs = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8)
    with torch.no_grad():
        expert = student.get_distribution(obs).distribution.mean + 0.05  # a small residual
    loss, mae = imitation_loss(student, obs, expert, continuous=True)
    loss.backward()
    assert mae == pytest.approx(0.05, abs=1e-5)
    # std 1 is far wider than a residual of 0.05: the likelihood term shrinks it
    assert torch.all(student.log_std.grad > 0)
    mean_grads = [p.grad.clone() for p in student.action_net.parameters()]
    student.zero_grad()
    mean = student.get_distribution(obs).distribution.mean
    torch.nn.functional.mse_loss(mean, expert).backward()
    for got, mse_only in zip(mean_grads, student.action_net.parameters()):
        torch.testing.assert_close(got, mse_only.grad)


# ---------------------------------------------------------------------------- downstream


def test_eval_and_video_run_on_the_continuous_policy(distilled: Path, tmp_path: Path) -> None:
    summary = evaluate_all(distilled, episodes=1, out_dir=tmp_path, progress=False)
    assert summary["policy"]["episodes"] == summary["oracle"]["episodes"] == 1
    assert (tmp_path / rundir.episodes_file("policy")).is_file()
    video = record_video(distilled, out=tmp_path / "video.mp4", episodes=1, gif=False)
    assert video["frames"] >= 2 and Path(video["mp4"]).stat().st_size > 0


def test_onnx_export_clips_and_matches_pytorch(distilled: Path) -> None:
    report = export_policy(distilled, "onnx")
    assert report["continuous"] and report["output"]["name"] == "action"
    assert report["max_abs_diff"] < 1e-4 and report["action_agreement"] == 1.0
    frames = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    out = OnnxPolicy(report["path"]).forward(frames)
    assert out.shape == (6, 2) and np.all(np.abs(out) <= 1.0)
    np.testing.assert_allclose(out, load_checkpoint(distilled).predict(frames), atol=1e-4)


def test_deploy_publishes_the_policy_action_as_a_twist(distilled: Path) -> None:
    onnx = OnnxPolicy(export_policy(distilled, "onnx")["path"])
    env = load_checkpoint(distilled).meta.env
    context, executor = Context(), SingleThreadedExecutor()
    node, camera = PolicyNode(context, onnx), Node("camera", context)
    commands: list[Twist] = []
    camera.create_subscription(Twist, TOPIC_CMD, commands.append, 5)
    pub = camera.create_publisher(Image, TOPIC_IMAGE, 5)
    executor.add_node(node)
    executor.add_node(camera)
    frame = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    pub.publish(image_to_msg(frame, 0, "cam"))
    for _ in range(2):
        executor.spin_once(timeout_sec=0.0)
    assert len(commands) == 1
    lin, ang = onnx.forward(frame[None])[0]
    np.testing.assert_allclose(twist_to_action(commands[0]),
                               (lin * env.max_linear_mps, ang * env.max_angular_rps), atol=1e-5)
    report = run_deploy(distilled, rate=20.0, duration=1.0, warmup_ticks=2)
    assert report["ticks"] >= 10 and report["messages"][TOPIC_CMD] == report["ticks"]


def test_saved_config_keeps_the_action_variant(distilled: Path) -> None:
    from training.config import load_run_config

    assert load_run_config(distilled).continuous is True
    assert "continuous" not in to_dict(load_run_config(distilled).env)
