"""`embodied eval` at the edges: every episode crashing, gates and sweeps checked before any
work, default outputs that never land in a folder under version control, the Dockerfile."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import embodied_cli
import rundir
from envs.config import EnvConfig, ObservationConfig, to_dict
from eval.rollout import PolicyAgent
from policies.checkpoint import build_policy, save_checkpoint
from training.config import find_config

REPO = Path(__file__).resolve().parent.parent
ARCH = {"features_dim": 32, "channels": [8, 16, 16], "net_arch": [32]}
SIZE = 40


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained camera policy for a tiny env, as a bare checkpoint file."""
    env = EnvConfig(max_steps=20, observation=ObservationConfig(width=SIZE, height=SIZE))
    policy = build_policy(gym.spaces.Box(0, 255, (3, SIZE, SIZE), np.uint8),
                          gym.spaces.Discrete(5), ARCH)
    folder = tmp_path_factory.mktemp("ckpt")
    return save_checkpoint(folder / rundir.POLICY_FILE, policy, ARCH, {"env": to_dict(env)})


def run_cli(*args: str) -> int:
    return embodied_cli.main(list(args))


# ------------------------------------------------------------------------- crashes and gates


def _crash(self, obs, info):
    raise RuntimeError("the policy broke")


def test_eval_fails_when_every_policy_episode_crashed(checkpoint: Path, tmp_path: Path,
                                                      monkeypatch, capsys) -> None:
    monkeypatch.setattr(PolicyAgent, "act", _crash)
    out = tmp_path / "out"
    assert run_cli("eval", str(checkpoint), "--episodes", "2", "--quiet", "--out",
                   str(out)) == 1
    err = capsys.readouterr().err
    assert "2 of 2 policy episodes crashed" in err
    assert "every one of the 2 policy episodes crashed" in err and "the policy broke" in err
    assert "Traceback" not in err
    assert (out / rundir.episodes_file("policy")).is_file()


def test_min_success_with_no_success_rate_fails_without_a_type_error(
        checkpoint: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(PolicyAgent, "act", _crash)
    code = run_cli("eval", str(checkpoint), "--episodes", "1", "--quiet", "--out",
                   str(tmp_path / "out"), "--min-success", "0.5")
    assert code == 1
    assert "TypeError" not in capsys.readouterr().err


def test_min_success_below_the_rate_exits_one(checkpoint: Path, tmp_path: Path,
                                              capsys) -> None:
    code = run_cli("eval", str(checkpoint), "--episodes", "1", "--quiet", "--out",
                   str(tmp_path / "out"), "--min-success", "1")
    err = capsys.readouterr().err
    # an untrained policy on a 20-step episode does not reach the goal
    assert code == 1 and "FAIL: success rate 0.00 is below --min-success 1" in err


@pytest.mark.parametrize("bad", [
    ["--sweep", "weather=0,1"],
    ["--sweep", "strength=0,x"],
    ["--min-success", "80"],
    ["--min-success", "lots"],
])
def test_bad_gate_or_sweep_is_refused_before_anything_runs(checkpoint: Path, tmp_path: Path,
                                                           bad: list[str], capsys) -> None:
    out = tmp_path / "out"
    try:
        code = run_cli("eval", str(checkpoint), "--episodes", "1", "--quiet", "--out",
                       str(out), *bad)
    except SystemExit as exc:  # argparse rejects the value
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and ("--sweep" in " ".join(bad)) == ("bad sweep" in err[-1])
    assert not out.exists(), "an evaluation ran before the input was checked"


# ------------------------------------------------------------------------- default outputs


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def tracked(tmp_path: Path, checkpoint: Path) -> Path:
    """A git checkout with a committed checkpoint in `models/` and `runs/` ignored."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    shutil.copy(checkpoint, repo / "models" / rundir.POLICY_FILE)
    (repo / ".gitignore").write_text("runs/\n")
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "models", cwd=repo)
    return repo


def test_default_out_of_a_tracked_folder_goes_under_runs(tracked: Path, monkeypatch) -> None:
    monkeypatch.chdir(tracked)
    ckpt = tracked / "models" / rundir.POLICY_FILE
    runs = Path(rundir.DEFAULT_RUNS_DIR)
    assert rundir.default_output(str(ckpt), "eval_heldout") == runs / "models/eval_heldout"
    assert rundir.default_output(str(tracked / "models"), "deploy") == runs / "models/deploy"
    reference = REPO / "policies" / "reference" / rundir.POLICY_FILE
    assert rundir.default_output(str(reference), "policy.onnx") == \
        runs / "reference" / "policy.onnx"
    assert rundir.default_output(None, "video_oracle.mp4") == runs / "video_oracle.mp4"


def test_default_out_of_a_run_keeps_writing_into_it(tracked: Path, tmp_path: Path) -> None:
    run = tracked / "runs" / "r1"  # ignored by git, as runs/ is
    (run / rundir.BEST_DIR).mkdir(parents=True)
    (run / rundir.CONFIG_FILE).write_text("seed: 0\n")
    best = run / rundir.BEST_DIR / rundir.POLICY_FILE
    assert rundir.default_output(str(run), "eval_heldout") == run / "eval_heldout"
    assert rundir.default_output(str(best), "policy.onnx") == best.parent / "policy.onnx"
    outside = tmp_path / "elsewhere"  # no git at all
    outside.mkdir()
    (outside / rundir.RUN_FILE).write_text("{}")
    assert rundir.default_output(str(outside), "deploy") == outside / "deploy"


def test_bare_checkpoint_outputs_go_under_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert rundir.default_output(str(tmp_path / "downloads" / "nav.pt"), "eval_heldout") \
        == Path(rundir.DEFAULT_RUNS_DIR) / "nav" / "eval_heldout"


def test_eval_leaves_a_tracked_folder_untouched(tracked: Path, monkeypatch) -> None:
    monkeypatch.chdir(tracked)
    ckpt = tracked / "models" / rundir.POLICY_FILE
    assert run_cli("eval", str(ckpt), "--episodes", "1", "--quiet") == 0
    assert _git("status", "--porcelain", cwd=tracked) == ""
    assert sorted(p.name for p in (tracked / "models").iterdir()) == [rundir.POLICY_FILE]
    assert (tracked / "runs" / "models" / "eval_heldout" / rundir.SUMMARY_FILE).is_file()


# ------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_usage_names_an_existing_preset() -> None:
    text = (REPO / "Dockerfile").read_text()
    configs = re.findall(r"train --config (\S+)", text)
    assert configs, "the Dockerfile's usage comment shows no training command"
    for name in configs:
        assert find_config(name).parent.name == "configs", name
