"""Training at the edges: Ctrl-C twice, two processes on one run directory, monitor CSV headers,
resuming from a corrupt or hostile checkpoint, malformed YAML."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

import embodied_cli
import rundir
from envs.config import ConfigError, EnvConfig, ObservationConfig
from training import config as config_mod
from training.claim import RunDirInUse, claim_run_dir
from training.config import load_config
from training.vec import make_vec_env

REPO = Path(__file__).resolve().parent.parent
TINY_ENV = EnvConfig(max_steps=20, observation=ObservationConfig(width=32, height=32))


def run_cli(*args: str) -> int:
    return embodied_cli.main(list(args))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny run: checkpoints at steps 64 and 128, monitor CSVs of two envs."""
    run_dir = tmp_path_factory.mktemp("safety") / "tiny"
    assert run_cli("train", "--config", "tiny", "--run-dir", str(run_dir), "--quiet") == 0
    return run_dir


def _copy(run_dir: Path, tmp_path: Path, total: int = 192) -> Path:
    """A copy of `run_dir` whose saved config asks for `total` steps (so a resume has work)."""
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    cfg = yaml.safe_load((copy / rundir.CONFIG_FILE).read_text())
    cfg["distill"]["total_timesteps"] = total
    (copy / rundir.CONFIG_FILE).write_text(yaml.safe_dump(cfg))
    return copy


def _group_alive(pgid: int) -> list[str]:
    """Processes of group `pgid` that are still running (zombies are dead: not counted)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(stat.parent.name)
    return alive


# ------------------------------------------------------------------------------ Ctrl-C twice


def test_close_after_an_interrupted_step_does_not_wait_forever() -> None:
    """A second Ctrl-C inside `step_wait` leaves some answers read and others not; SB3's close
    then waits for answers that never come. Ours returns within its timeout."""
    venv = make_vec_env(TINY_ENV, 2, seed=0, kind="subproc")
    venv.reset()
    venv.step_async([0, 0])
    venv.remotes[0].recv()  # the state an interrupt between the two receives leaves
    closer = threading.Thread(target=venv.close, daemon=True)
    start = time.perf_counter()
    closer.start()
    closer.join(20)
    assert not closer.is_alive(), "close() hangs after a step interrupted half way"
    assert time.perf_counter() - start < 15
    assert not any(p.is_alive() for p in venv.processes)


def test_double_ctrl_c_stops_within_seconds_and_leaves_no_workers(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "embodied_cli", "train", "--config", "tiny", "--run-dir",
         str(run_dir), "--quiet", "vec_env=subproc", "distill.total_timesteps=1000000",
         "distill.steps_per_iteration=100000", "eval.every_timesteps=0",
         "checkpoint_every_timesteps=1000000"],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        # wait until episodes are being logged: the collection loop is under way, and one
        # iteration (100,000 frames) outlasts the test, so the second press lands in a step
        deadline = time.time() + 120
        while time.time() < deadline and not any(
                len(p.read_text().splitlines()) > 3
                for p in run_dir.glob(rundir.MONITOR_PATTERN)):
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        start = time.perf_counter()
        out, _ = proc.communicate(timeout=20)
        elapsed = time.perf_counter() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert elapsed < 10, out
    assert proc.returncode == 130, out
    assert "press Ctrl-C again to stop now" in out
    assert "stopped at once" in out and "Traceback" not in out
    time.sleep(1.0)
    assert _group_alive(proc.pid) == [], "worker processes outlived the command"
    assert not (run_dir / rundir.LOCK_FILE).exists()


# ------------------------------------------------------------------------- one run, one process

_RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import embodied_cli, training.train  # imports before the start line, so both start at once
    ready, go = Path(sys.argv[1]), Path(sys.argv[2])
    ready.touch()
    while not go.exists():
        time.sleep(0.001)
    sys.exit(embodied_cli.main(sys.argv[3:]))
""")


def test_two_trains_released_together_leave_one_run_and_one_refusal(tmp_path: Path) -> None:
    run_dir = tmp_path / "shared"
    go = tmp_path / "go"
    procs = []
    for k in range(2):
        cmd = [sys.executable, "-c", _RACER, str(tmp_path / f"ready{k}"), str(go), "train",
               "--config", "tiny", "--run-dir", str(run_dir), "--quiet", f"seed={k}"]
        procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    deadline = time.time() + 120
    while time.time() < deadline and not all((tmp_path / f"ready{k}").exists() for k in (0, 1)):
        time.sleep(0.05)
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    loser = next(err for p, (_, err) in zip(procs, results) if p.returncode == 2)
    lines = loser.strip().splitlines()
    assert len(lines) == 1 and str(run_dir) in lines[0] and "in use by process" in lines[0]
    winner_seed = next(k for k, p in enumerate(procs) if p.returncode == 0)
    run = rundir.read_json(run_dir / rundir.RUN_FILE)
    assert run["seed"] == winner_seed and len(run["commands"]) == 1
    assert yaml.safe_load((run_dir / rundir.CONFIG_FILE).read_text())["seed"] == winner_seed
    assert len(list((run_dir / rundir.TB_DIR).rglob("events.out.tfevents.*"))) == 1
    assert not (run_dir / rundir.LOCK_FILE).exists()


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (run_dir / rundir.LOCK_FILE).write_text(f'{{"pid": {dead}, "started": "earlier"}}\n')
    with claim_run_dir(run_dir, fresh=False) as claim:
        assert str(os.getpid()) in claim.lock.read_text()
    assert not (run_dir / rundir.LOCK_FILE).exists()


def test_a_live_holder_is_named_and_its_exit_frees_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from training.claim import claim_run_dir; "
         "c = claim_run_dir(sys.argv[1], fresh=True); print('held', flush=True); "
         "time.sleep(60)", str(run_dir)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirInUse, match=f"in use by process {holder.pid}"):
            claim_run_dir(run_dir, fresh=False)
    finally:
        holder.kill()  # like kill -9: no clean-up ran, the lock file stays
        holder.wait()
    assert (run_dir / rundir.LOCK_FILE).exists()
    claim_run_dir(run_dir, fresh=False).release()


def test_a_fresh_run_refuses_a_full_directory_in_one_line(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "full"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    assert run_cli("train", "--config", "tiny", "--run-dir", str(run_dir), "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists and is not empty" in err[0]
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]


# -------------------------------------------------------------------------------- monitor CSVs


def _monitor_lines(run_dir: Path) -> dict[str, list[str]]:
    return {p.name: p.read_text().splitlines()
            for p in sorted(run_dir.glob(rundir.MONITOR_PATTERN))}


def test_monitor_csvs_start_with_sb3_headers(tiny_run: Path) -> None:
    files = _monitor_lines(tiny_run)
    assert len(files) == 2
    for name, lines in files.items():
        assert lines[0].startswith("#{") and '"t_start"' in lines[0], name
        assert lines[1] == ",".join(("r", "l", "t", *rundir.MONITOR_INFO_KEYS)), name
        assert len(lines) > 2, f"{name} logged no episode"


def test_a_resumed_run_appends_rows_without_a_second_header(tiny_run: Path,
                                                            tmp_path: Path) -> None:
    copy = _copy(tiny_run, tmp_path, total=256)
    before = _monitor_lines(copy)
    assert run_cli("train", "--resume", str(copy), "--quiet") == 0
    for name, lines in _monitor_lines(copy).items():
        assert sum(line.startswith("#") for line in lines) == 1, name
        assert sum(line.startswith("r,l,t") for line in lines) == 1, name
        assert lines[:len(before[name])] == before[name] and len(lines) > len(before[name])


# --------------------------------------------------------------------------- resume, bad files


def test_corrupt_trainer_state_names_the_file_and_offers_the_previous_checkpoint(
        tiny_run: Path, tmp_path: Path, capsys) -> None:
    copy = _copy(tiny_run, tmp_path)
    latest = rundir.read_json(copy / rundir.LATEST_FILE)
    bad = copy / rundir.CHECKPOINTS_DIR / latest["path"] / rundir.TRAINER_FILE
    bad.write_bytes(bad.read_bytes()[:200])  # torn, as a full disk would leave it
    assert run_cli("train", "--resume", str(copy), "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    previous = rundir.step_dir_name(64)
    assert len(err) == 1 and str(bad) in err[0] and "weights_only" not in err[0]
    assert f"embodied train --resume {copy} --from {previous}" in err[0]
    assert run_cli("train", "--resume", str(copy), "--from", previous, "--quiet") == 0
    assert rundir.read_json(copy / rundir.TRAIN_SUMMARY_FILE)["timesteps"] == 192


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited",))


def test_a_trainer_state_that_runs_code_is_refused(tiny_run: Path, tmp_path: Path,
                                                    capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    copy = _copy(tiny_run, tmp_path)
    latest = rundir.read_json(copy / rundir.LATEST_FILE)
    bad = copy / rundir.CHECKPOINTS_DIR / latest["path"] / rundir.TRAINER_FILE
    torch.save({"timesteps": 128, "payload": _Exploit()}, bad, pickle_protocol=2)
    assert run_cli("train", "--resume", str(copy), "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "refused" in err[0]
    assert "weights_only" not in err[0]
    assert not (tmp_path / "exploited").exists()


def test_bad_json_in_latest_names_the_file(tiny_run: Path, tmp_path: Path, capsys) -> None:
    copy = _copy(tiny_run, tmp_path)
    (copy / rundir.LATEST_FILE).write_text('{"path": ')
    assert run_cli("train", "--resume", str(copy), "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(copy / rundir.LATEST_FILE) in err[0]
    assert "--from step_" in err[0]


def test_a_pickled_object_is_no_trainer_state(tiny_run: Path, tmp_path: Path, capsys) -> None:
    copy = _copy(tiny_run, tmp_path)
    latest = rundir.read_json(copy / rundir.LATEST_FILE)
    bad = copy / rundir.CHECKPOINTS_DIR / latest["path"] / rundir.TRAINER_FILE
    bad.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    assert run_cli("train", "--resume", str(copy), "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]


# ------------------------------------------------------------------------------ malformed YAML

BROKEN_YAML = "method: distill\nenv:\n  max_steps: 40\n   seed: 1\n"


def test_a_malformed_config_file_is_one_line_with_its_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(BROKEN_YAML)
    assert run_cli("train", "--config", str(path), "--run-dir", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}, line 4" in err[0] and "fix it there" in err[0]
    assert not (tmp_path / "r").exists()


def test_a_malformed_preset_is_one_line(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "broken.yaml").write_text("distill:\n  total_timesteps: [1, 2\n")
    monkeypatch.setattr(config_mod, "CONFIG_DIR", tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("broken")
    assert "\n" not in str(info.value) and "broken.yaml, line 3" in str(info.value)


def test_a_preset_that_extends_another_states_only_what_it_changes(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("extends: default\ndistill:\n  aux_weight: 0.5\n")
    (tmp_path / "mine.yaml").write_text("extends: base.yaml\nseed: 3\n")
    default = load_config("default")
    mine = load_config(str(tmp_path / "mine.yaml"), ["distill.buffer_size=1000"])
    # the distill section merges key by key: default's other distill settings survive
    assert mine == dataclasses.replace(
        default, seed=3, distill=dataclasses.replace(default.distill, aux_weight=0.5,
                                                     buffer_size=1000))


@pytest.mark.parametrize(("text", "expected"), [
    ("extends: nowhere\n", "`extends: nowhere`: unknown config 'nowhere'; presets: "),
    ("extends: [default]\n", "`extends` must name a preset or a .yaml file"),
    ("extends: mine.yaml\n", "goes round in a circle (mine.yaml -> mine.yaml)"),
    ("extends: ../elsewhere.yaml\n", "a path is read from this file's own folder"),
])
def test_a_bad_extends_is_one_line_naming_the_file(tmp_path: Path, capsys, text: str,
                                                   expected: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    assert run_cli("train", "--config", str(path), "--run-dir", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and expected in err[0], err
    assert not (tmp_path / "r").exists()


def test_a_malformed_saved_config_is_named_on_resume(tiny_run: Path, tmp_path: Path,
                                                     capsys) -> None:
    copy = _copy(tiny_run, tmp_path)
    (copy / rundir.CONFIG_FILE).write_text(BROKEN_YAML)
    assert run_cli("train", "--resume", str(copy), "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{copy / rundir.CONFIG_FILE}, line 4" in err[0]
