"""Training from the CLI: artifacts, resume, Ctrl-C, weights-only checkpoints, bad configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import embodied_cli
from envs.config import ConfigError
from policies.checkpoint import FORMAT, load_checkpoint
from training.config import load_config

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> int:
    return embodied_cli.main(list(args))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    assert run_cli("train", "--config", "tiny", "--run-dir", str(run_dir), "--quiet") == 0
    return run_dir


def test_tiny_run_writes_every_artifact(tiny_run: Path):
    for rel in ("config.yaml", "run.json", "train_summary.json", "final/policy.pt",
                "best/policy.pt", "eval_during_training.jsonl", "checkpoints/latest.json"):
        assert (tiny_run / rel).is_file(), rel
    assert any((tiny_run / "tb").iterdir()), "TensorBoard logs missing"
    monitors = list((tiny_run / "monitor").glob("*.monitor.csv"))
    assert monitors, "per-episode monitor logs missing"
    run = json.loads((tiny_run / "run.json").read_text())
    for key in ("versions", "git_commit", "seed", "env_seeds", "command"):
        assert key in run
    assert {"python", "torch", "stable_baselines3", "pybullet"} <= set(run["versions"])
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert cfg["env"]["observation"]["width"] == 40  # resolved from the preset
    summary = json.loads((tiny_run / "train_summary.json").read_text())
    assert summary["timesteps"] >= 128
    rows = [json.loads(x) for x in (tiny_run / "eval_during_training.jsonl").read_text().split(
        "\n") if x]
    assert rows and all(0.0 <= r["success_rate"] <= 1.0 for r in rows)


def test_checkpoint_is_weights_only(tiny_run: Path):
    payload = torch.load(tiny_run / "final/policy.pt", weights_only=True)
    assert payload["format"] == FORMAT
    loaded = load_checkpoint(tiny_run)
    obs = torch.zeros(40, 40, 3, dtype=torch.uint8).numpy()
    assert loaded.predict(obs) in range(5)


def test_resume_continues_step_count(tiny_run: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "resumed"
    shutil.copytree(tiny_run, copy)
    # make the saved config ask for more steps, as a user extending a run would
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["distill"]["total_timesteps"] = 256
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    latest = json.loads((copy / "checkpoints/latest.json").read_text())
    assert run_cli("train", "--resume", str(copy), "--quiet") == 0
    summary = json.loads((copy / "train_summary.json").read_text())
    assert summary["timesteps"] == 256
    assert latest["timesteps"] >= 64
    run = json.loads((copy / "run.json").read_text())
    assert any("--resume" in c for c in run["commands"])


def test_ppo_method_runs(tmp_path: Path):
    run_dir = tmp_path / "ppo"
    assert run_cli("train", "--config", "tiny", "--run-dir", str(run_dir), "--quiet",
                   "method=ppo") == 0
    assert load_checkpoint(run_dir / "final" / "policy.pt").meta.method == "ppo"


@pytest.mark.parametrize("override,field", [
    ("distill.nope=1", "distill.nope"),
    ("ppo.learning_rate=-1", "ppo.learning_rate"),
    ("env.randomization.light_ambient=[0.9,0.2]", "light_ambient"),
    ("method=sac", "method"),
    ("n_envs=two", "n_envs"),
    ("env.continuous=2", "continuous"),
])
def test_bad_override_fails_with_one_line_and_no_run_dir(override, field, tmp_path, capsys):
    run_dir = tmp_path / "bad"
    assert run_cli("train", "--config", "tiny", "--run-dir", str(run_dir), override) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err
    assert not run_dir.exists()


def test_unknown_preset_is_named():
    with pytest.raises(ConfigError, match="unknown config 'nope'"):
        load_config("nope")


def test_sigint_saves_checkpoint_and_exits_zero(tmp_path: Path):
    run_dir = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # subprocess envs, and Ctrl-C sent to the whole process group as a terminal does
    proc = subprocess.Popen(
        [sys.executable, "-m", "embodied_cli", "train", "--config", "tiny", "--run-dir",
         str(run_dir), "--quiet", "distill.total_timesteps=100000", "eval.every_timesteps=0",
         "vec_env=subproc"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "checkpoints" / "latest.json").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "embodied train --resume" in out
    latest = json.loads((run_dir / "checkpoints/latest.json").read_text())
    assert latest["timesteps"] > 0
    loaded = load_checkpoint(run_dir / "checkpoints" / latest["path"] / "policy.pt")
    assert loaded.meta.timesteps == latest["timesteps"]


def test_run_json_records_the_machine(tiny_run: Path):
    run = json.loads((tiny_run / "run.json").read_text())
    assert {"cpu", "cores", "python", "platform"} <= set(run["machine"])
    assert run["versions"]["torch"] == torch.__version__


def test_training_ignores_the_global_numpy_rng(tmp_path: Path):
    """Every random draw comes from a seeded generator: the global numpy state (which no code
    seeds any more) changes nothing."""
    import numpy as np

    from training.train import train

    weights = []
    for k, global_seed in enumerate((0, 12345)):
        np.random.seed(global_seed)
        result = train(load_config("tiny", ["eval.every_timesteps=0"]), tmp_path / f"r{k}",
                       quiet=True)
        weights.append(torch.load(result.final_checkpoint, weights_only=True)["state_dict"])
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_quickstart_pipeline_in_process(tmp_path: Path):
    from envs.config import ConfigError as Refused
    from training.quickstart import QuickstartSettings, quickstart

    settings = QuickstartSettings(config="tiny", episodes=1, video_episodes=1,
                                  bench_resolution=32, bench_steps=20, bench_resets=3,
                                  oracle_episodes=1)
    lines: list[str] = []
    result = quickstart(tmp_path / "qs", settings, quiet=True, log=lines.append)
    assert not result.interrupted and result.summary["policies"] == ["policy", "oracle", "random"]
    assert [line.split("]")[0] for line in lines if line.startswith("\n[")] == [
        f"\n[{k}/5" for k in range(1, 6)]
    assert all(Path(p).is_file() for p in result.files)
    names = {Path(p).name for p in result.files}
    assert {"summary.json", "video_policy.mp4", "bench_env.json", "ENGINEERING_NOTES.md",
            "index.html"} <= names
    assert result.checkpoint.is_file() and result.run_dir == tmp_path / "qs" / "run"
    with pytest.raises(Refused, match="not empty"):
        quickstart(tmp_path / "qs", settings, log=lines.append)
    with pytest.raises(Refused, match="episodes"):
        QuickstartSettings(episodes=0)
