"""`embodied video --failures N`: which failed episodes are picked, and the videos and index.

Envs here use 40x40 observations and 12-step episodes with an untrained checkpoint, which
fails nearly every episode; the chase camera is shrunk, so the file runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import embodied_cli
import rundir
from envs.chase import ChaseCamera
from envs.config import EnvConfig, ObservationConfig, to_dict
from eval import report
from eval.record import failures_report, pick_failures, record_failures
from eval.rollout import episode_seed
from eval.video import read_video_meta
from policies.checkpoint import CheckpointError, build_policy, save_checkpoint

ARCH = {"features_dim": 32, "channels": [8, 16, 16], "net_arch": [32]}
SIZE = 40
SMALL_CHASE = ChaseCamera(width_px=64, height_px=48)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained discrete camera policy for a tiny env with 12-step episodes."""
    cfg = EnvConfig(max_steps=12, observation=ObservationConfig(width=SIZE, height=SIZE))
    obs_space = gym.spaces.Box(0, 255, (3, SIZE, SIZE), np.uint8)
    policy = build_policy(obs_space, gym.spaces.Discrete(5), ARCH)
    meta = {"env": to_dict(cfg), "frame_stack": 1, "continuous": False}
    return save_checkpoint(tmp_path_factory.mktemp("run") / "policy.pt", policy, ARCH, meta)


def rec(episode: int, mode: str | None) -> dict:
    """A record whose failure mode is `mode` (None: a success), with every trajectory fact."""
    base = {"episode": episode, "seed": episode_seed(0, episode), "success": mode is None,
            "steps": 100, "collisions": 0, "path_length": 3.0, "timed_out": True,
            "longest_contact_streak": 0, "turn_in_place_steps": 0, "goal_first_seen_step": 3,
            "goal_in_view_frames": 20, "min_distance": 2.0, "longest_no_progress_steps": 10}
    facts = {None: {}, "other": {}, "stuck_in_contact": {"collisions": 80},
             "never_saw_goal": {"goal_first_seen_step": None},
             "approached_timed_out": {"min_distance": 0.5},
             "error": {"error": "RuntimeError: boom"}}
    return {**base, **facts[mode]}


def test_pick_failures_spreads_across_modes_in_episode_order() -> None:
    records = [rec(0, None), rec(1, "other"), rec(2, "other"), rec(3, "error"),
               rec(4, "other"), rec(5, "never_saw_goal"), rec(6, None),
               rec(7, "stuck_in_contact"), rec(8, "never_saw_goal")]
    assert [r["episode"] for r in pick_failures(records, 1)] == [1]
    # one of each mode before any mode twice; crashed episodes have nothing to show
    assert [r["episode"] for r in pick_failures(records, 3)] == [1, 5, 7]
    assert [r["episode"] for r in pick_failures(records, 4)] == [1, 2, 5, 7]
    assert [r["episode"] for r in pick_failures(records, 5)] == [1, 2, 5, 7, 8]
    assert [r["episode"] for r in pick_failures(records, 50)] == [1, 2, 4, 5, 7, 8]
    assert pick_failures([rec(0, None), rec(1, "error")], 3) == []
    with pytest.raises(ValueError, match=">= 1"):
        pick_failures(records, 0)


def test_failure_videos_match_the_eval_records(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "failures"
    index = record_failures(checkpoint, out, failures=2, episodes=4, seed=5, chase=SMALL_CHASE)
    assert json.loads((out / rundir.FAILURES_INDEX_FILE).read_text()) == index
    evaluated = tmp_path / "eval"
    report.evaluate_all(checkpoint, episodes=4, seed=5, out_dir=evaluated, policies=["policy"],
                        progress=False)
    records = {r["episode"]: r
               for r in rundir.read_jsonl(evaluated / rundir.episodes_file("policy"))}
    assert index["split"] == "heldout" and index["seed"] == 5 and index["requested"] == 2
    assert 1 <= len(index["videos"]) <= 2
    assert index["failures_found"] >= len(index["videos"])
    assert sum(index["scanned_failure_modes"].values()) >= index["failures_found"]
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([rundir.FAILURES_INDEX_FILE]
                             + [v["file"] for v in index["videos"]])
    for video in index["videos"]:
        record = records[video["episode"]]  # the same episode as `embodied eval` ran
        assert video["seed"] == record["seed"] == episode_seed(5, video["episode"])
        assert video["failure_mode"] == record["failure_mode"] is not None
        assert video["steps"] == record["steps"]
        assert video["file"] == rundir.failure_video_file(video["episode"],
                                                          video["failure_mode"])
        count, height, width = read_video_meta(out / video["file"])
        assert count == video["frames"] == record["steps"] + 1
        # camera scaled to the 256-px map, the map, the chase panel; caption below
        assert width == SIZE * (256 // SIZE) + 256 + SMALL_CHASE.width_px
        assert height > 256


def test_cli_says_when_fewer_failures_exist(checkpoint: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "few"
    code = embodied_cli.main(["video", str(checkpoint), "--failures", "5", "--episodes", "1",
                              "--seed", "5", "--out", str(out)])
    assert code == 0
    index = json.loads((out / rundir.FAILURES_INDEX_FILE).read_text())
    assert index["scanned_episodes"] == 1 and len(index["videos"]) <= 1
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith(f"Only {index['failures_found']} failed episode(s) among 1 ")
    assert "5 asked for" in printed[0] and str(out) in printed[-1]
    assert len(printed) == 2


def test_failures_report_without_a_shortfall() -> None:
    index = {"requested": 2, "failures_found": 7, "scanned_episodes": 9, "split": "heldout",
             "seed": 1, "videos": [{"failure_mode": "other"}, {"failure_mode": "other"}]}
    assert failures_report(index, "runs/x/failures_heldout") == [
        "Wrote 2 failure video(s) to runs/x/failures_heldout (other 2); index "
        "runs/x/failures_heldout/index.json"]


def test_bad_requests_fail_before_any_rollout(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="folder"):
        record_failures(checkpoint, tmp_path / "clip.mp4", failures=1)
    with pytest.raises(ValueError, match=">= 1"):
        record_failures(checkpoint, tmp_path / "f", failures=0)
    with pytest.raises(CheckpointError, match="needs one"):
        record_failures(None, tmp_path / "f", failures=1)
    assert list(tmp_path.iterdir()) == []
    assert embodied_cli.main(["video", str(checkpoint), "--failures", "1", "--out",
                              str(tmp_path / "v.mp4")]) == 2
