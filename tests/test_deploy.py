"""Export parity (ONNX, TorchScript), the deployment loop, its bag, rejection and metrics."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import embodied_cli
import rundir
from envs.config import EnvConfig, ObservationConfig, to_dict
from envs.nav_env import DISCRETE_ACTIONS, CameraNavEnv
from envs.wrappers import make_env
from eval.deploy_report import write_deploy_report
from policies.checkpoint import CheckpointError, build_policy, file_sha256, save_checkpoint
from policies.deploy.bag import read_bag_summary
from policies.deploy.loop import ensure_onnx, run_deploy
from policies.deploy.messages import Image, Twist, UInt32, image_to_msg, twist_to_action
from policies.deploy.node import Context, Node, SingleThreadedExecutor
from policies.deploy.nodes import (
    TOPIC_CMD,
    TOPIC_EPISODE,
    TOPIC_IMAGE,
    TOPICS,
    PolicyNode,
    env_action_to_twist,
    twist_to_env_action,
)
from policies.export import OnnxPolicy, export_policy, parity_path

SIZE = 40
ARCH = {"features_dim": 32, "channels": [8, 16, 16], "net_arch": [32]}
# Short episodes, so a 2 s run at 20 Hz finishes several.
CFG = EnvConfig(observation=ObservationConfig(width=SIZE, height=SIZE), max_steps=10)


def _checkpoint(path: Path, continuous: bool, bias: float = 0.0) -> Path:
    action_space = (gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if continuous
                    else gym.spaces.Discrete(len(DISCRETE_ACTIONS)))
    policy = build_policy(gym.spaces.Box(0, 255, (3, SIZE, SIZE), np.uint8), action_space, ARCH)
    with torch.no_grad():
        policy.action_net.bias.fill_(bias)
    meta = {"env": to_dict(CFG)}  # spaces and arch are added by save_checkpoint
    # a run directory (run.json beside the checkpoint): default outputs land beside it
    (path / rundir.RUN_FILE).write_text("{}")
    return save_checkpoint(path / "policy.pt", policy, ARCH, meta)


@pytest.fixture(scope="module")
def discrete_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("discrete"), continuous=False)


@pytest.fixture(scope="module")
def onnx_export(discrete_ckpt: Path) -> dict:
    return export_policy(discrete_ckpt, "onnx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- export


def test_onnx_export_matches_pytorch_on_recorded_frames(discrete_ckpt: Path,
                                                        onnx_export: dict) -> None:
    r = onnx_export
    assert Path(r["path"]) == discrete_ckpt.parent / "policy.onnx"
    assert r["obs_source"].startswith("rollout") and r["n_obs"] == 64
    assert r["max_abs_diff"] < 1e-4 and r["action_agreement"] == 1.0
    assert json.loads(parity_path(r["path"]).read_text())["onnx"]["max_abs_diff"] \
        == r["max_abs_diff"]
    policy = OnnxPolicy(r["path"])
    frames = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    assert policy.forward(frames).shape == (3, len(DISCRETE_ACTIONS))  # dynamic batch axis
    action = policy.act(frames[0])
    assert isinstance(action, int) and 0 <= action < len(DISCRETE_ACTIONS)


def test_torchscript_export_matches_pytorch_and_keeps_onnx_parity_entry(
        discrete_ckpt: Path, onnx_export: dict) -> None:
    obs = np.random.default_rng(1).integers(0, 256, (16, SIZE, SIZE, 3), dtype=np.uint8)
    r = export_policy(discrete_ckpt, "torchscript", check_obs=obs)
    assert Path(r["path"]).suffix == ".ts" and r["obs_source"] == "given" and r["n_obs"] == 16
    assert r["max_abs_diff"] < 1e-4 and r["action_agreement"] == 1.0
    entries = json.loads(parity_path(r["path"]).read_text())
    assert set(entries) == {"onnx", "torchscript"}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_continuous_export_clips_inside_the_graph(tmp_path: Path, fmt: str) -> None:
    # A large head bias pushes the raw mean far outside [-1, 1]: only a clip in the graph
    # keeps the exported output equal to what SB3's predict returns.
    ckpt = _checkpoint(tmp_path, continuous=True, bias=3.0)
    obs = np.random.default_rng(2).integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8)
    r = export_policy(ckpt, fmt, check_obs=obs)
    assert r["max_abs_diff"] < 1e-4 and r["action_agreement"] == 1.0
    if fmt == "onnx":
        out = OnnxPolicy(r["path"]).forward(obs)
        assert out.shape == (8, 2) and np.all(out == 1.0)


def test_export_rejects_bad_inputs(discrete_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="check_obs must be uint8"):
        export_policy(discrete_ckpt, "onnx", out=tmp_path / "x.onnx",
                      check_obs=np.zeros((2, SIZE, SIZE), np.uint8))
    with pytest.raises(ValueError, match="unknown export format"):
        export_policy(discrete_ckpt, "tflite")


def test_missing_checkpoint_raises_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        run_deploy(tmp_path / "missing.pt", duration=1.0)
    with pytest.raises(CheckpointError):
        export_policy(tmp_path, "onnx")  # a folder with no checkpoint in it


def test_onnx_records_the_checkpoint_hash(discrete_ckpt: Path, onnx_export: dict) -> None:
    digest = file_sha256(discrete_ckpt)
    assert onnx_export["checkpoint_sha256"] == digest
    assert OnnxPolicy(onnx_export["path"]).checkpoint_sha256 == digest
    parity = json.loads(parity_path(onnx_export["path"]).read_text())
    assert parity["onnx"]["checkpoint_sha256"] == digest


def test_deploy_reexports_when_the_checkpoint_bytes_change_whatever_the_file_times(
        tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, continuous=False, bias=0.0)
    path, digest, report = ensure_onnx(ckpt)
    assert report is not None and digest == file_sha256(ckpt)
    # Same bytes, newer file time: the model is still the checkpoint's, so it is reused.
    later = path.stat().st_mtime + 100
    os.utime(ckpt, (later, later))
    assert ensure_onnx(ckpt) == (path, digest, None)
    # Different weights written with a file time older than the model's: a time-based check
    # would run the stale model; the hash does not match, so deploy exports afresh.
    _checkpoint(tmp_path, continuous=False, bias=5.0)
    older = path.stat().st_mtime - 100
    os.utime(ckpt, (older, older))
    new_digest = file_sha256(ckpt)
    assert new_digest != digest
    deployed = run_deploy(ckpt, rate=20.0, duration=0.5, warmup_ticks=2)
    assert deployed["model_reused"] is False and deployed["export_parity"] is not None
    assert deployed["checkpoint_sha256"] == new_digest
    assert OnnxPolicy(path).checkpoint_sha256 == new_digest


def test_checkpoint_and_exports_get_the_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        ckpt = _checkpoint(tmp_path, continuous=False)
        obs = np.zeros((2, SIZE, SIZE, 3), np.uint8)
        onnx_path = Path(export_policy(ckpt, "onnx", check_obs=obs)["path"])
        ts_path = Path(export_policy(ckpt, "torchscript", check_obs=obs)["path"])
    finally:
        os.umask(old)
    for path in (ckpt, onnx_path, ts_path, parity_path(onnx_path)):
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


# ---------------------------------------------------------------------------- command mapping


@pytest.mark.parametrize("action", range(len(DISCRETE_ACTIONS)))
def test_discrete_action_survives_the_twist_round_trip(action: int) -> None:
    v, w = twist_to_action(env_action_to_twist(action, CFG, continuous=False))
    assert twist_to_env_action(v, w, CFG, continuous=False) == action


def test_continuous_command_is_clipped_to_the_action_box() -> None:
    out = twist_to_env_action(10.0, -0.5 * CFG.max_angular_rps, CFG, continuous=True)
    np.testing.assert_allclose(out, [1.0, -0.5])


# ---------------------------------------------------------------------------- the loop


def test_policy_node_rejects_a_frame_of_the_wrong_size(onnx_export: dict) -> None:
    context, executor = Context(), SingleThreadedExecutor()
    node = PolicyNode(context, OnnxPolicy(onnx_export["path"]))
    camera = Node("camera", context)
    pub = camera.create_publisher(Image, TOPIC_IMAGE, 5)
    commands: list[Twist] = []
    camera.create_subscription(Twist, TOPIC_CMD, commands.append, 5)
    for node_ in (node, camera):
        executor.add_node(node_)
    pub.publish(image_to_msg(np.zeros((SIZE // 2, SIZE, 3), np.uint8), 0, "cam"))
    pub.publish(image_to_msg(np.zeros((SIZE, SIZE, 3), np.uint8), 0, "cam"))
    executor.spin_once(timeout_sec=0.0)
    executor.spin_once(timeout_sec=0.0)
    assert node.image_sub.stats.rejected == 1 and node.image_sub.stats.delivered == 1
    assert len(commands) == 1


def test_run_deploy_records_a_bag_that_matches_the_report(discrete_ckpt: Path,
                                                          onnx_export: dict,
                                                          tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    report = run_deploy(discrete_ckpt, rate=20.0, duration=2.0, record=bag, warmup_ticks=5,
                        inject_malformed_every=6)
    # Ticks keep coming after every injected malformed frame; none of them stops the loop.
    assert report["ticks"] >= 30
    assert report["malformed_injected"] == report["ticks"] // 6 >= 4
    assert report["rejected_messages"] == report["rejected_by_topic"][TOPIC_IMAGE] \
        == report["malformed_injected"]
    assert report["messages"][TOPIC_CMD] == report["ticks"]  # every valid frame answered
    assert report["episodes"] >= 2  # max_steps=10: episodes end and the loop resets
    assert report["ticks_measured"] == report["ticks"] - 5
    assert report["warmup_ticks_excluded"] == 5
    summary = read_bag_summary(bag)
    assert {t: s["msgtype"] for t, s in summary.items()} == TOPICS
    assert {t: s["count"] for t, s in summary.items()} == report["messages"] \
        == report["bag_counts"]
    for stage in ("conversion", "inference", "publish", "total"):
        assert 0 < report["latency_ms"][stage]["p50"] <= report["latency_ms"][stage]["max"]
    files = write_deploy_report(report, tmp_path / "report")
    assert json.loads(files["json"].read_text())["ticks"] == report["ticks"]
    assert files["histogram"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_endpoint_serves_the_loop_counters(discrete_ckpt: Path,
                                                   onnx_export: dict) -> None:
    port = _free_port()
    result: dict = {}

    def deploy() -> None:
        result["report"] = run_deploy(discrete_ckpt, rate=20.0, duration=2.5, metrics_port=port,
                                      warmup_ticks=2, inject_malformed_every=4)

    thread = threading.Thread(target=deploy)
    thread.start()
    text = ""
    try:
        for _ in range(60):  # the export check and env setup come before the server starts
            time.sleep(0.1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                    text = r.read().decode()
            except OSError:
                continue
            if "embodied_deploy_rejected_messages_total{topic=\"/camera/image_raw\"} 1" in text:
                break
    finally:
        thread.join(timeout=30)
    assert not thread.is_alive() and "report" in result
    for name in ("embodied_deploy_ticks_total", "embodied_deploy_deadline_misses_total",
                 "embodied_deploy_rejected_messages_total",
                 "embodied_deploy_latency_seconds_bucket", "embodied_deploy_episodes_total"):
        assert name in text
    assert result["report"]["rejected_messages"] >= 1


def test_metrics_port_is_checked_and_a_port_in_use_is_named(discrete_ckpt: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match="1-65535"):
        run_deploy(discrete_ckpt, duration=0.5, metrics_port=99999)
    with pytest.raises(SystemExit) as exit_info:
        embodied_cli.main(["deploy", str(discrete_ckpt), "--metrics-port", "99999"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--metrics-port: must be a port number 1-65535" in err and "Traceback" not in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = embodied_cli.main(["deploy", str(discrete_ckpt), "--duration", "0.5",
                                  "--metrics-port", str(port)])
    out, err = capsys.readouterr()
    assert code == 2 and "Serving" not in out  # announced only once the port is open
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"metrics port {port}" in lines[0]


# ---------------------------------------------------------------------------- frame stacking

def stacked_cfg(stride: int, previous_command: bool = False) -> EnvConfig:
    return EnvConfig(observation=ObservationConfig(width=SIZE, height=SIZE, frame_stack=2,
                                                   frame_stride=stride,
                                                   previous_command=previous_command),
                     max_steps=10)


@pytest.mark.parametrize(("stride", "previous_command"), [(1, False), (2, False), (1, True)])
def test_policy_node_builds_observations_as_the_env_and_restarts_at_each_episode(
        tmp_path: Path, stride: int, previous_command: bool) -> None:
    cfg = stacked_cfg(stride, previous_command)
    channels = cfg.observation.stacked_channels
    policy = build_policy(gym.spaces.Box(0, 255, (channels, SIZE, SIZE), np.uint8),
                          gym.spaces.Discrete(len(DISCRETE_ACTIONS)), ARCH)
    (tmp_path / rundir.RUN_FILE).write_text("{}")  # a run directory: the export lands beside it
    ckpt = save_checkpoint(tmp_path / "policy.pt", policy, ARCH, {"env": to_dict(cfg)})
    obs = np.zeros((2, SIZE, SIZE, channels), np.uint8)
    onnx_policy = OnnxPolicy(export_policy(ckpt, "onnx", check_obs=obs)["path"])
    context, executor = Context(), SingleThreadedExecutor()
    node = PolicyNode(context, onnx_policy)
    seen: list[np.ndarray] = []
    decided: list[int] = []
    forward, action = onnx_policy.forward, onnx_policy.action
    onnx_policy.forward = lambda batch: seen.append(batch[0].copy()) or forward(batch)
    onnx_policy.action = lambda out: decided.append(int(action(out))) or decided[-1]
    camera = Node("camera", context)
    image_pub = camera.create_publisher(Image, TOPIC_IMAGE, 5)
    episode_pub = camera.create_publisher(UInt32, TOPIC_EPISODE, 5)
    executor.add_node(node)
    # The robot streams raw frames and obeys the node's commands; training's env stacks the
    # frames (and adds the command taken) with a reset per episode.
    raw, stacked = CameraNavEnv(cfg), make_env(cfg)
    expected = []
    try:
        for episode, seed in enumerate((11, 12)):
            frame, _ = raw.reset(seed=seed)
            expected.append(stacked.reset(seed=seed)[0])
            episode_pub.publish(UInt32(data=episode))
            image_pub.publish(image_to_msg(frame, 0, "cam"))
            executor.spin_once(timeout_sec=0.0)
            for _ in range(3):
                frame = raw.step(decided[-1])[0]
                expected.append(stacked.step(decided[-1])[0])
                image_pub.publish(image_to_msg(frame, 0, "cam"))
                executor.spin_once(timeout_sec=0.0)
    finally:
        raw.close()
        stacked.close()
    assert len(seen) == len(expected) == 8
    for got, want in zip(seen, expected):
        np.testing.assert_array_equal(got, want)
    # The first frame of the second episode fills the stack: nothing of episode one remains.
    np.testing.assert_array_equal(seen[4][..., :3], seen[4][..., 3:6])
    if previous_command:  # each episode starts from the stop command, then reads the last one
        assert (seen[0][..., 6:] == 128).all() and (seen[4][..., 6:] == 128).all()
        np.testing.assert_array_equal(
            seen[1][0, 0, 6:], np.rint((DISCRETE_ACTIONS[decided[0]] + 1) * 127.5))
