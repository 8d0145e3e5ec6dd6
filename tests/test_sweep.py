"""`embodied sweep`: bad arguments, a local sweep end to end, and a sweep on a Ray head.

Every Ray connection stays on 127.0.0.1. The head of the cluster test runs as
`ray start --head --block` in its own process group and is ended through that group
(SIGKILL), never with `ray stop`, which would stop every Ray of the user on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

import embodied_cli
import rundir
from envs.config import ConfigError
from eval.rollout import TEST_SEED
from policies.actions import DECISION
from policies.checkpoint import load_checkpoint
from training import cluster
from training.sweep_plan import SweepSpec, make_plan, parse_grid, trial_config

TINY = ["--config", "tiny", "--test-episodes", "3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str) -> int:
    return embodied_cli.main(list(args))


@pytest.fixture(autouse=True)
def _no_inherited_cluster(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


# ------------------------------------------------------------------------ arguments


@pytest.mark.parametrize("args,needle", [
    (["--grid", "distill.nope=1,2"], "distill.nope"),
    (["--grid", "distill.learning_rate="], "no values"),
    (["--grid", "distill.learning_rate=,"], "no values"),
    (["--grid", "n_envs=2,two"], "n_envs"),
    (["--grid", "distill.learning_rate=1e-4..1e-3"], "--search random|optuna"),
    (["--grid", "seed=1,2"], "--seeds"),
    (["--search", "optuna", "--grid", "distill.learning_rate=1e-4,1e-3"], "--samples"),
    (["--cpus-per-trial", "1", "vec_env=subproc"], "--cpus-per-trial 2"),
    (["--address", "127.0.0.1:{port}"], "cannot reach a Ray cluster at 127.0.0.1:{port}"),
    (["--address", "ray://127.0.0.1:10001"], "Ray Client"),
])
def test_bad_arguments_fail_in_one_line_before_any_trial(args, needle, tmp_path, capsys):
    port = str(free_port())
    args = [a.replace("{port}", port) for a in args]
    out = tmp_path / "sweep"
    start = time.perf_counter()
    assert run_cli("sweep", *TINY, "--out", str(out), *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle.replace("{port}", port) in err
    assert not out.exists()  # nothing started, nothing written
    assert time.perf_counter() - start < 20


def test_a_local_sweep_counts_enough_cpus_for_its_largest_trial(tmp_path, monkeypatch, capsys):
    """A trial of 8 subprocess envs on a machine with fewer cores: the local Ray is asked for
    8 CPUs (trials then run one at a time), never fewer than the machine has."""
    asked = {}

    def connect(address=None, num_cpus=None):
        asked.update(address=address, num_cpus=num_cpus)
        raise ConfigError("stop here")

    monkeypatch.setattr(cluster, "connect", connect)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert run_cli("sweep", *TINY, "n_envs=8", "vec_env=subproc", "--out",
                   str(tmp_path / "sw")) == 2
    assert asked == {"address": None, "num_cpus": 8}
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert run_cli("sweep", *TINY, "n_envs=8", "vec_env=subproc", "--out",
                   str(tmp_path / "sw")) == 2
    assert asked == {"address": None, "num_cpus": 16}
    capsys.readouterr()


def test_random_search_is_seeded_and_inside_its_ranges():
    spec = SweepSpec(config="tiny", seeds=2, search="random", samples=5, search_seed=3,
                     grid=parse_grid(["distill.learning_rate=log:1e-4..1e-2",
                                      "distill.batch_size=8..32", "vec_env=dummy,subproc"]))
    plan = make_plan(spec)
    again = make_plan(spec)
    assert plan["configurations"] == again["configurations"]
    assert len(plan["configurations"]) == 5 and plan["seeds"] == [0, 1]
    for config in plan["configurations"]:
        params = config["params"]
        assert 1e-4 <= params["distill.learning_rate"] <= 1e-2
        assert isinstance(params["distill.batch_size"], int)
        assert 8 <= params["distill.batch_size"] <= 32
    # subprocess envs make a trial ask for one CPU per env (tiny has 2)
    assert plan["max_cpus_per_trial"] == (2 if any(
        c["params"]["vec_env"] == "subproc" for c in plan["configurations"]) else 1)
    other = make_plan(SweepSpec(**{**spec.__dict__, "search_seed": 4}))
    assert other["configurations"] != plan["configurations"]


def test_trial_threads_follow_the_cpu_share():
    plan = make_plan(SweepSpec(config="tiny"))
    cfg = trial_config(plan["base"], {"distill.learning_rate": 1e-3}, seed=7, cpus=1)
    assert cfg.seed == 7 and cfg.distill.learning_rate == 1e-3
    assert cfg.torch_threads_train == 1 and cfg.torch_threads_collect == 1


def test_address_comes_from_the_flag_then_ray_address(monkeypatch):
    assert cluster.resolve_address(None) is None  # local Ray in this process
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6400")
    assert cluster.resolve_address(None) == "127.0.0.1:6400"
    assert cluster.resolve_address("127.0.0.1:6500") == "127.0.0.1:6500"
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert cluster.resolve_address(None) is None


def test_split_address():
    assert cluster.split_address("127.0.0.1:1234") == ("127.0.0.1", 1234)
    assert cluster.split_address("head") == ("head", cluster.DEFAULT_PORT)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        cluster.split_address("127.0.0.1:http")


# ------------------------------------------------------------------------ a local sweep


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweeps") / "local"
    assert run_cli("sweep", *TINY, "--seeds", "2", "--out", str(out),
                   "--grid", "distill.learning_rate=5e-4,1e-3") == 0
    return out


def _episode_seeds(run_dir: Path) -> list[tuple[int, int]]:
    records = rundir.read_jsonl(run_dir / "eval_heldout" / rundir.episodes_file("policy"))
    return [(r["seed"], r["scene"]["layout_seed"]) for r in records]


def test_local_sweep_trials_are_ordinary_runs(local_sweep: Path):
    report = json.loads((local_sweep / rundir.SWEEP_FILE).read_text())
    assert report["cluster"]["mode"] == "local" and report["cluster"]["nodes"] == ["127.0.0.1"]
    trials = report["trials"]
    assert sorted((t["config_id"], t["seed"]) for t in trials) == [
        ("c0", 0), ("c0", 1), ("c1", 0), ("c1", 1)]
    episodes = set()
    for t in trials:
        run = local_sweep / t["run_dir"]
        for rel in (rundir.CONFIG_FILE, rundir.RUN_FILE, rundir.TRAIN_SUMMARY_FILE,
                    "final/policy.pt", "best/policy.pt", rundir.EVAL_DURING_TRAINING_FILE,
                    rundir.LATEST_FILE):
            assert (run / rel).is_file(), (run, rel)
        cfg = yaml.safe_load((run / rundir.CONFIG_FILE).read_text())
        assert cfg["seed"] == t["seed"]
        assert cfg["distill"]["learning_rate"] == t["params"]["distill.learning_rate"]
        assert cfg["torch_threads_train"] == 1  # one CPU per trial with in-process envs
        assert t["status"] == "done" and t["timesteps"] == 128
        assert len(t["curve"]) == len(rundir.read_jsonl(run / rundir.EVAL_DURING_TRAINING_FILE))
        assert load_checkpoint(run).meta.seed == t["seed"]
        # scored on the held-out test episodes, the same ones for every trial
        summary = json.loads((run / "eval_heldout" / rundir.SUMMARY_FILE).read_text())
        assert summary["split"] == "heldout" and summary["seed"] == TEST_SEED
        assert summary["episodes"] == 3 and summary["checkpoint"].endswith("final/policy.pt")
        assert t["test"]["success_rate"] == summary["policy"]["success_rate"]
        assert 0.0 <= t["test"]["spl"] <= 1.0
        episodes.add(tuple(_episode_seeds(run)))
    assert len(episodes) == 1


def test_local_sweep_aggregate_table(local_sweep: Path):
    report = json.loads((local_sweep / rundir.SWEEP_FILE).read_text())
    by_id = {c["config_id"]: c for c in report["configs"]}
    assert set(by_id) == {"c0", "c1"}
    for cid, config in by_id.items():
        scores = [t["test"]["success_rate"] for t in sorted(report["trials"],
                                                            key=lambda t: t["seed"])
                  if t["config_id"] == cid]
        agg = config["success_rate"]
        assert agg["n"] == 2 and agg["scores"] == scores
        assert agg["mean"] == pytest.approx(np.mean(scores))
        assert agg["iqm"] == pytest.approx(stats.trim_mean(scores, 0.25))
        assert agg["worst"] == min(scores)
        assert agg["mean_ci95"][0] <= agg["mean"] <= agg["mean_ci95"][1]
    pairs = report["probability_of_improvement"]["pairs"]
    assert {(p["x"], p["y"]) for p in pairs} == {("c0", "c1"), ("c1", "c0")}
    assert sum(p["p"] for p in pairs) == pytest.approx(1.0)
    table = (local_sweep / rundir.SWEEP_TABLE_FILE).read_text()
    assert "IQM" in table and "| `c0` | 2 |" in table and "| `c1` | 2 |" in table
    assert "P(row > column)" in table and "`trials/c1_s1`" in table
    for name in (rundir.SWEEP_CURVES_FIGURE, rundir.SWEEP_FINAL_FIGURE):
        assert (local_sweep / name).read_bytes()[:4] == b"\x89PNG"
    assert set(report["timings_s"]) == {"ray_start_s", "fit_s", "score_s"}


def test_resume_of_a_finished_sweep_reuses_its_scores(local_sweep: Path, capsys):
    summary = local_sweep / "trials" / "c0_s0" / "eval_heldout" / rundir.SUMMARY_FILE
    before = summary.stat().st_mtime_ns
    fit_s = json.loads((local_sweep / "sweep.json").read_text())["timings_s"]["fit_s"]
    assert run_cli("sweep", "--resume", str(local_sweep)) == 0
    assert summary.stat().st_mtime_ns == before
    # the report still counts the trials' own time, not only the resumed session's
    assert json.loads((local_sweep / "sweep.json").read_text())["timings_s"]["fit_s"] >= fit_s
    assert "| `c1` | 2 |" in capsys.readouterr().out
    assert run_cli("sweep", "--resume", str(local_sweep), "--grid", "seed=1") == 2


def test_resume_scores_again_an_evaluation_that_decided_by_another_rule(local_sweep: Path):
    """A trial scored before the action rule changed is scored again, not reused."""
    summary = local_sweep / "trials" / "c0_s0" / "eval_heldout" / rundir.SUMMARY_FILE
    stale = {**json.loads(summary.read_text()), "decision": "an older rule"}
    summary.write_text(json.dumps(stale))
    assert run_cli("sweep", "--resume", str(local_sweep)) == 0
    assert json.loads(summary.read_text())["decision"] == DECISION


# ------------------------------------------------------------------------ a Ray head


@pytest.fixture
def ray_head(monkeypatch):
    """A 2-CPU Ray head on 127.0.0.1 with its own token, in its own process group."""
    port = free_port()
    token = secrets.token_hex(16)
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are limited
    env = {**os.environ, **cluster.LOOPBACK_ENV, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": token}
    ray = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}", f"--ray-client-server-port={free_port()}",
         f"--dashboard-port={free_port()}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        monkeypatch.setenv("RAY_AUTH_TOKEN", token)
        deadline = time.time() + 60
        while True:
            try:
                cluster.probe(f"127.0.0.1:{port}", timeout_s=2.0)
                break
            except ConfigError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def test_sweep_on_a_ray_head(ray_head: str, tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "cluster"
    # without token mode the driver is refused: one line naming what to set
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert run_cli("sweep", *TINY, "--seeds", "1", "--out", str(out),
                   "--address", ray_head) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "RAY_AUTH_MODE=token" in err
    assert not out.exists()

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert run_cli("sweep", *TINY, "--seeds", "1", "--out", str(out),
                   "--address", ray_head) == 0
    report = json.loads((out / rundir.SWEEP_FILE).read_text())
    assert report["cluster"] == {"mode": "cluster", "address": ray_head,
                                 "nodes": ["127.0.0.1"], "cpus": 2.0, "gpus": 0.0}
    (trial,) = report["trials"]
    assert trial["status"] == "done" and trial["test"]["episodes"] == 3
    assert (out / trial["run_dir"] / "final" / "policy.pt").is_file()


def test_trials_table_shows_each_trials_agreement_with_its_teacher() -> None:
    from training.sweep_report import format_trials

    base = {"seed": 0, "status": "done", "timesteps": 1000, "best_val_success": 0.9}
    scored = {**base, "run_dir": "trials/c0_s0",
              "test": {"success_rate": 0.85, "success_rate_ci95": [0.8, 0.9], "spl": 0.8,
                       "teacher": {"agreement": 0.714}}}
    older = {**base, "run_dir": "trials/c0_s1", "test": {"success_rate": 0.8, "spl": 0.7}}
    lines = format_trials([scored, older]).splitlines()
    assert lines[0].endswith("| test SPL | test agreement with the teacher |")
    assert lines[2].endswith("| 0.85 [0.80, 0.90] | 0.80 | 0.71 |")
    assert lines[3].endswith("| 0.80 | 0.70 | n/a |")  # scored before agreement existed
