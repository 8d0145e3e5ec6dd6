"""Evaluation reports, robustness sweeps, gates and recorded videos, on tiny envs.

Envs here use 40x40 observations and (except the oracle-quality check) 30-step episodes, so the
whole file runs in seconds on two busy cores. The checkpoint is an untrained policy: these
tests check the plumbing and the files, not learning.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import rundir
from envs.config import EnvConfig, ObservationConfig, to_dict
from eval import metrics, report, robustness
from eval.record import caption, record_video
from eval.rollout import OracleAgent, RandomAgent, episode_seed, evaluate, make_eval_env
from eval.video import read_video_meta
from policies.checkpoint import CheckpointError, build_policy, resolve_checkpoint, save_checkpoint

ARCH = {"features_dim": 32, "channels": [8, 16, 16], "net_arch": [32]}
SIZE = 40


def tiny_config(max_steps: int = 30, split: str = "train") -> EnvConfig:
    return EnvConfig(max_steps=max_steps, split=split,
                     observation=ObservationConfig(width=SIZE, height=SIZE))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained discrete camera policy for the tiny env (channel-first observations)."""
    obs_space = gym.spaces.Box(0, 255, (3, SIZE, SIZE), np.uint8)
    policy = build_policy(obs_space, gym.spaces.Discrete(5), ARCH)
    meta = {"env": to_dict(tiny_config()), "frame_stack": 1, "continuous": False}
    return save_checkpoint(tmp_path_factory.mktemp("run") / "policy.pt", policy, ARCH, meta)


@pytest.fixture(scope="module")
def evaluated(checkpoint: Path, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("eval")
    summary = report.evaluate_all(checkpoint, episodes=3, seed=5, out_dir=out, progress=False)
    return summary, out


def test_oracle_succeeds_and_random_fails_on_heldout() -> None:
    env = make_eval_env(EnvConfig(split="heldout",
                                  observation=ObservationConfig(width=SIZE, height=SIZE)), False)
    try:
        oracle = metrics.summarize(list(evaluate(env, OracleAgent(False), 12, seed=0)))
        random = metrics.summarize(list(evaluate(env, RandomAgent(env.action_space), 6, seed=0)))
    finally:
        env.close()
    assert oracle["errors"] == 0 and oracle["success_rate"] >= 0.95
    assert oracle["spl"] >= 0.8
    assert random["success_rate"] <= 0.35


def test_evaluate_all_writes_files_on_shared_seeds(evaluated: tuple[dict, Path],
                                                   checkpoint: Path) -> None:
    summary, out = evaluated
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary
    assert summary["policies"] == ["policy", "oracle", "random"]
    assert summary["split"] == "heldout" and summary["env"]["split"] == "heldout"
    assert summary["env"]["observation"]["width"] == SIZE
    assert summary["checkpoint"] == str(checkpoint)
    seeds = {}
    for name in summary["policies"]:
        assert summary[name]["episodes"] + summary[name]["errors"] == 3
        records = rundir.read_jsonl(out / f"episodes_{name}.jsonl")
        seeds[name] = [(r["seed"], r["scene"]["layout_seed"]) for r in records]
        assert [r["seed"] for r in records] == [episode_seed(5, k) for k in range(3)]
        assert all(r["scene"]["layout_seed"] % 2 == 1 for r in records)  # held-out parity
    assert seeds["policy"] == seeds["oracle"] == seeds["random"]
    ratio = summary["spl_vs_oracle"]
    assert ratio is None or ratio == pytest.approx(summary["policy"]["spl"]
                                                   / summary["oracle"]["spl"])


def test_evaluate_all_is_deterministic(evaluated: tuple[dict, Path], checkpoint: Path,
                                       tmp_path: Path) -> None:
    first, out = evaluated
    again = report.evaluate_all(checkpoint, episodes=3, seed=5, out_dir=tmp_path,
                                progress=False)
    assert again == first
    for name in first["policies"]:
        assert (tmp_path / f"episodes_{name}.jsonl").read_text() == \
            (out / f"episodes_{name}.jsonl").read_text()


def test_evaluate_all_honours_frame_stack(tmp_path: Path) -> None:
    obs_space = gym.spaces.Box(0, 255, (6, SIZE, SIZE), np.uint8)
    policy = build_policy(obs_space, gym.spaces.Discrete(5), ARCH)
    meta = {"env": to_dict(tiny_config(max_steps=5)), "frame_stack": 2, "continuous": False}
    path = save_checkpoint(tmp_path / "policy.pt", policy, ARCH, meta)
    threads = torch.get_num_threads()
    summary = report.evaluate_all(path, episodes=1, policies=("policy",), progress=False)
    assert summary["policy"]["errors"] == 0 and summary["policy"]["mean_steps"] == 5
    assert torch.get_num_threads() == threads


def test_evaluate_all_without_checkpoint_needs_no_policy() -> None:
    summary = report.evaluate_all(None, episodes=1, policies=("random",), progress=False)
    assert summary["checkpoint"] is None and summary["spl_vs_oracle"] is None
    with pytest.raises(CheckpointError, match="needs a checkpoint"):
        report.evaluate_all(None, episodes=1, progress=False)
    with pytest.raises(ValueError, match="unknown"):
        report.evaluate_all(None, episodes=1, policies=("teacher",), progress=False)


def test_sweep_one_factor_leaves_others_at_zero(checkpoint: Path, tmp_path: Path) -> None:
    data = robustness.sweep(checkpoint, factor="camera", strengths=(0.0, 1.0), episodes=3,
                            out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "sweep_camera.json").read_text()) == data
    png = (tmp_path / "sweep_camera.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert [(r["strength"], r["policy"]) for r in data["rows"]] == [
        (0.0, "policy"), (0.0, "oracle"), (1.0, "policy"), (1.0, "oracle")]
    for row in data["rows"]:
        assert set(row) >= {"success_rate", "success_rate_ci95", "spl", "spl_ci95"}
    records = rundir.read_jsonl(tmp_path / "sweep_camera_episodes.jsonl")
    assert len(records) == 2 * 2 * 3
    swept = [r["scene"] for r in records if r["strength"] == 1.0 and r["policy"] == "oracle"]
    # lighting and layout sit at their anchors in every episode; the camera varies
    for key in ("light_azimuth_deg", "light_ambient", "obstacle_count", "friction"):
        assert len({s[key] for s in swept}) == 1, key
    assert len({s["camera_fov_deg"] for s in swept}) == 3
    still = [r["scene"] for r in records if r["strength"] == 0.0 and r["policy"] == "oracle"]
    assert len({s["camera_fov_deg"] for s in still}) == 1


def test_sweep_all_factors_without_checkpoint(tmp_path: Path) -> None:
    data = robustness.sweep(None, strengths=(0.0, 2.0), episodes=2, out_dir=tmp_path,
                            policies=("oracle",), progress=False)
    assert (tmp_path / "sweep_all.json").is_file() and (tmp_path / "sweep_all.png").is_file()
    assert [r["strength"] for r in data["rows"]] == [0.0, 2.0]


@pytest.mark.parametrize(("text", "expected"), [
    ("strength=0,0.5,1", ("all", (0.0, 0.5, 1.0))),
    ("lighting=0,1,2", ("lighting", (0.0, 1.0, 2.0))),
    (" camera = 1.5 ", ("camera", (1.5,))),
])
def test_parse_sweep(text: str, expected: tuple) -> None:
    assert robustness.parse_sweep(text) == expected


@pytest.mark.parametrize(("text", "match"), [
    ("0,1,2", "FACTOR="), ("weather=0,1", "unknown factor"), ("lighting=0,x", "numbers"),
    ("lighting=", "numbers"), ("camera=-1", ">= 0"), ("camera=nan", ">= 0"),
])
def test_parse_sweep_rejects_bad_input(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        robustness.parse_sweep(text)


def test_gate() -> None:
    summary = {"policies": ["policy"], "policy": {"success_rate": 0.8}}
    assert report.gate(summary, 0.8) and not report.gate(summary, 0.81)
    assert not report.gate({"policy": {"success_rate": None}}, 0.0)
    assert report.gate(summary | {"oracle": {"success_rate": 1.0}}, 0.99, name="oracle")
    with pytest.raises(ValueError, match="no results"):
        report.gate({"oracle": {"success_rate": 1.0}}, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        report.gate(summary, 80)


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        report.evaluate_all(tmp_path / "nope.pt", episodes=1, progress=False)
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        robustness.sweep(tmp_path, episodes=1, progress=False)


def test_a_run_directory_stands_for_its_final_policy(tmp_path: Path) -> None:
    best = tmp_path / rundir.BEST_DIR / rundir.POLICY_FILE
    final = tmp_path / rundir.FINAL_DIR / rundir.POLICY_FILE
    best.parent.mkdir()
    best.write_bytes(b"")
    # a run stopped before its last policy was written: the validation's pick
    assert resolve_checkpoint(tmp_path) == best
    final.parent.mkdir()
    final.write_bytes(b"")
    assert resolve_checkpoint(tmp_path) == final
    assert resolve_checkpoint(best) == best  # a file named outright is that file


def test_corrupt_checkpoint_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "policy.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        report.evaluate_all(bad, episodes=1, progress=False)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        record_video(bad, tmp_path / "v.mp4")


def test_caption_names_discrete_actions() -> None:
    lines = caption("oracle", 1, 7, np.int64(1), 0.25, 1.5, False, True, continuous=False)
    assert lines[1].startswith("action forward-left  reward +0.250")
    assert "collision yes" in lines[2]
    assert caption("p", 0, 1, np.array([0.5, -1.0]), 0.0, 1.0, False, False,
                   continuous=True)[1].startswith("action [+0.50, -1.00]")


def test_record_video_frame_count_and_size(checkpoint: Path, tmp_path: Path) -> None:
    out = record_video(checkpoint, tmp_path / "clip.mp4", episodes=2, seed=3, fps=10)
    expected = sum(r["steps"] + 1 for r in out["episodes"])
    assert out["frames"] == expected
    count, height, width = read_video_meta(out["mp4"])
    assert count == expected and height % 2 == 0 and width % 2 == 0
    assert Path(out["gif"]).is_file() and Path(out["gif"]).suffix == ".gif"
    assert [r["seed"] for r in out["episodes"]] == [episode_seed(3, k) for k in range(2)]


def test_record_video_random_is_deterministic(checkpoint: Path, tmp_path: Path) -> None:
    a = record_video(checkpoint, tmp_path / "a.mp4", policy="random", episodes=1, seed=1,
                     gif=False)
    b = record_video(checkpoint, tmp_path / "b.mp4", policy="random", episodes=1, seed=1,
                     gif=False)
    assert a["gif"] is None and not (tmp_path / "a.gif").exists()
    assert a["episodes"] == b["episodes"] and a["frames"] == b["frames"]


def test_record_video_oracle_needs_no_checkpoint(tmp_path: Path) -> None:
    out = record_video(None, tmp_path / "o.mp4", policy="oracle", episodes=1, gif=False)
    record = out["episodes"][0]
    assert record["success"] and out["frames"] == record["steps"] + 1
    assert record["scene"]["layout_seed"] % 2 == 1  # default split: held-out
    with pytest.raises(CheckpointError, match="needs one"):
        record_video(None, tmp_path / "c.mp4", policy="checkpoint")
    with pytest.raises(ValueError, match=".mp4"):
        record_video(None, tmp_path / "c.gif", policy="oracle")
