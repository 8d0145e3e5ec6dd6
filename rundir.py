"""The ground floor: the run directory's file names, atomic file writes, JSON/JSONL, provenance.

Every stage (envs, policies, eval, training, writeup) and the CLI import this module; it imports
nothing of the project, so a fact written here (a file name, a seed offset, how a file reaches
disk) has exactly one home.

A run directory is the only hand-off between stages:

    config.yaml                  resolved training config (every default filled in)
    run.json                     command, versions, git commit, seeds, device, machine
    tb/                          TensorBoard logs
    monitor/<k>.monitor.csv      per-episode training logs (SB3 Monitor), one per env
    checkpoints/step_<N>/        policy.pt + trainer.pt (resume state); latest.json points here
    teacher/teacher.pt           a fully trained PPO teacher (distill.teacher=ppo), reused on resume
    .train.lock                  held while `embodied train` writes the run (released on exit)
    final/policy.pt              the last policy: what the run directory stands for
    best/policy.pt               best held-out validation success so far (kept to compare)
    eval_during_training.jsonl   one line per periodic held-out validation
    train_summary.json           wall-clock, steps/s, time to success, final numbers
    eval_<split>/                `embodied eval`: summary.json, episodes_<policy>.jsonl, sweeps
    video_policy.mp4 / .gif      `embodied video`
    policy.onnx, policy.parity.json   `embodied export`
    deploy/                      `embodied deploy`: deploy_report.json, deploy_latency.png
    writeup/                     `embodied writeup`: ENGINEERING_NOTES.md, index.html, figures/

Writes go through `atomic_write`: the bytes land in a hidden sibling that is renamed onto the
target only once complete, so a crash or Ctrl-C never leaves half a file, and the file gets the
permissions the user's umask gives an ordinary file (not the 0600 of a temp file).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import secrets
import subprocess
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------------ file names

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
TB_DIR = "tb"
MONITOR_DIR = "monitor"
MONITOR_PATTERN = f"{MONITOR_DIR}/*.monitor.csv"
MONITOR_INFO_KEYS = ("success", "collisions")
"""Episode info the training monitors log after SB3's `r, l, t` columns, in this order; a
reader of a monitor CSV without its header line takes the columns from here."""
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = f"{CHECKPOINTS_DIR}/latest.json"
POLICY_FILE = "policy.pt"
TRAINER_FILE = "trainer.pt"
TEACHER_DIR = "teacher"
TEACHER_FILE = "teacher.pt"
LOCK_FILE = ".train.lock"
"""Held (an OS file lock) by the one `embodied train` process writing the run directory."""
BEST_DIR = "best"
FINAL_DIR = "final"
POLICY_DIRS = (FINAL_DIR, BEST_DIR)
"""Where a run directory's policy is looked for, in this order (eval, video, export, deploy,
a sweep's test and the quickstart read it): the last policy, then the validation's pick for
a run that ended before it saved one. Not the validation's pick first: 50 validation episodes
cannot tell checkpoints at 0.94-0.98 success apart (a standard error of 0.03), so the best of
a dozen of them is mostly the luckiest, often one from the middle of the run, before the
learning rate decayed and with a third of the frames still to come. Over the three students
of the default preset's 20-minute sweep on the same 200 held-out test episodes, the final
policies scored success 0.955 / 0.965 / 0.95 against the picks' 0.935 / 0.95 / 0.95 and
touched something in 0.035 / 0.04 / 0.025 of the episodes against 0.055 / 0.06 / 0.02; over
two more sweeps' 3,600 test episodes success held (66 won, 64 lost) and the episodes with
contact fell from 214 to 180 (the README's routes table)."""
EVAL_DURING_TRAINING_FILE = "eval_during_training.jsonl"
TRAIN_SUMMARY_FILE = "train_summary.json"
SUMMARY_FILE = "summary.json"
ONNX_FILE = "policy.onnx"
PARITY_FILE = "policy.parity.json"
DEPLOY_DIR = "deploy"
DEPLOY_REPORT_FILE = f"{DEPLOY_DIR}/deploy_report.json"
DEPLOY_FIGURE_FILE = f"{DEPLOY_DIR}/deploy_latency.png"
WRITEUP_DIR = "writeup"
SWEEP_FILE = "sweep.json"
"""A sweep folder (`embodied sweep`) holds sweep.json, sweep.md (the table), sweep_curves.png
and sweep_final.png (the plots), sweep_plan.json (what was asked), trials/<id>_s<seed>/ (one
run directory per trial) and tune/ (Ray Tune's state for --resume)."""
SWEEP_METRICS = (("success_rate", "success"), ("spl", "SPL"),
                 ("collision_free_success", "collision-free success"),
                 ("contact_episode_rate", "episodes with contact"))
"""The test metrics sweep.json aggregates per configuration across seeds, with their labels."""
SWEEP_LOWER_IS_BETTER = ("contact_episode_rate",)
"""Those of `SWEEP_METRICS` whose worst seed is the highest."""
SWEEP_PLAN_FILE = "sweep_plan.json"
SWEEP_TABLE_FILE = "sweep.md"
SWEEP_CURVES_FIGURE = "sweep_curves.png"
SWEEP_FINAL_FIGURE = "sweep_final.png"
SWEEP_TRIALS_DIR = "trials"
DEFAULT_RUNS_DIR = "runs"
DEFAULT_BENCH_DIR = f"{DEFAULT_RUNS_DIR}/bench"
BENCH_KINDS = ("env", "train", "learn", "infer", "loop", "sweep")


def step_dir_name(timesteps: int) -> str:
    """The folder of a periodic checkpoint: `step_<N>` with N zero-padded, so names sort."""
    return f"step_{timesteps:09d}"


def eval_dir_name(split: str) -> str:
    """The default output folder of `embodied eval` on `split`."""
    return f"eval_{split}"


def episodes_file(policy: str) -> str:
    """Per-episode records of one policy in an eval folder."""
    return f"episodes_{policy}.jsonl"


def sweep_file(factor: str, suffix: str = ".json") -> str:
    """A robustness sweep's table (`.json`), plot (`.png`) or records (`_episodes.jsonl`)."""
    return f"sweep_{factor}{suffix}"


def video_file(policy: str, suffix: str = ".mp4") -> str:
    """A recorded video of `policy` (`checkpoint`, `oracle`, `random`)."""
    return f"video_{policy}{suffix}"


FAILURES_INDEX_FILE = "index.json"
"""The index of a failure-video folder: which episode, seed and failure mode each video shows."""


def failures_dir_name(split: str, policy: str = "policy") -> str:
    """The default output folder of `embodied video --failures` on `split`: `failures_<split>`
    for the checkpoint's policy, `failures_<split>_<policy>` for a baseline (oracle, random)."""
    return f"failures_{split}" if policy == "policy" else f"failures_{split}_{policy}"


def failure_video_file(episode: int, mode: str) -> str:
    """One failed evaluation episode's video in a failure-video folder."""
    return f"failure_{episode:04d}_{mode}.mp4"


def bench_file(kind: str) -> str:
    """The JSON one `embodied bench <kind>` writes."""
    return f"bench_{kind}.json"


# ---------------------------------------------------------------------------------- seeds

SEED_OFFSETS: dict[str, int] = {
    "teacher_envs": 50_000,
    "distill_iteration": 10_000,
    "ppo_resume": 1_000,
    "finetune_envs": 90_000,
    "eval_base": 1_000_000_000,
    "eval_seed_stride": 100_000,
    "random_agent_stride": 7_919,
    "deploy_base": 8_000_000,
}
"""Every offset added to a user's seed, in one table so that no two random streams overlap.

`teacher_envs`, `finetune_envs`: the vec envs of a teacher or fine-tuning phase start at
seed + offset (env i at + i). `distill_iteration`: DAgger iteration k collects with
seed + k * offset. `ppo_resume`: a resumed PPO run reseeds with seed + offset * (updates + 1).
`eval_base`, `eval_seed_stride`: evaluation episode k of evaluation seed s resets with
eval_base + s * stride + k, far above any training env seed. `random_agent_stride`: the
random baseline's action stream in an episode is seeded with seed * stride + the layout seed.
`deploy_base`: deployment episode i of `embodied deploy` resets with deploy_base + i.
"""


# --------------------------------------------------------------------------------- writes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Run `write(tmp)` on a hidden sibling of `path`, then rename it onto `path`.

    The sibling lives in the same folder (a rename is atomic only within one file system) and is
    removed if `write` raises or is interrupted. The result is readable as the umask allows,
    like any file the user creates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Bytes, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """UTF-8 text, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def plain(value: Any) -> Any:
    """`value` as strict-JSON data: numpy scalars/arrays as Python values, NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy array or scalar
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """`data` as indented strict JSON (NaN written as null), atomically."""
    return write_text(path, json.dumps(plain(data), indent=2, allow_nan=False) + "\n")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> Path:
    """One strict-JSON object per line, atomically."""
    lines = [json.dumps(plain(r), allow_nan=False) + "\n" for r in records]
    return write_text(path, "".join(lines))


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one record as one line (a line is written in one call, so readers see whole
    lines; a log that grows during a run is appended, not rewritten)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(plain(record), allow_nan=False) + "\n")


def run_dir_of(path: str | os.PathLike[str]) -> Path | None:
    """The run directory `path` belongs to: itself, or a folder up to three levels above a
    file (`best/policy.pt`, `checkpoints/step_<N>/policy.pt`) that holds config.yaml or
    run.json; None for anything else (a bare checkpoint)."""
    path = Path(path)
    for folder in [path] if path.is_dir() else list(path.parents)[:3]:
        if (folder / CONFIG_FILE).is_file() or (folder / RUN_FILE).is_file():
            return folder
    return None


def tracked_files(folder: str | os.PathLike[str]) -> list[str]:
    """Files under `folder` that git tracks ([] outside a git checkout or without git).

    A default output folder that holds tracked files is part of the source tree: writing
    there by default would change committed files.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        return []
    try:
        out = subprocess.run(["git", "-C", str(folder), "ls-files", "--", "."],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def default_output(target: str | os.PathLike[str] | None, name: str) -> Path:
    """Where eval, video, export and deploy write `name` when --out is not given.

    Beside the target when it belongs to a run directory that git does not track (a run under
    runs/ keeps its outputs with it: <run>/eval_heldout, <run>/best/policy.onnx). Anything
    else, a bare checkpoint file or a folder under version control such as
    policies/reference/, is never written into: its outputs go to runs/<its name>/<name>,
    so the source tree is left as it was. Without a target: runs/<name>.
    """
    runs = Path(DEFAULT_RUNS_DIR)
    if not target:
        return runs / name
    path = Path(target)
    folder = path if path.is_dir() else path.parent
    run_dir = run_dir_of(path)
    if run_dir is not None and not tracked_files(run_dir):
        return folder / name
    named = path.is_dir() or path.name == POLICY_FILE  # else name it by its file
    label = (run_dir or folder).resolve().name if named else path.stem
    return runs / (label or "checkpoint") / name


# ---------------------------------------------------------------------------------- reads


class RunFileError(ValueError):
    """A run-directory file is missing or cannot be parsed; the message names the file."""


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file; a missing or malformed one raises `RunFileError` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFileError(f"{path} is not valid JSON ({err}); delete or restore it") from None


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a `.jsonl` file; a malformed line raises `RunFileError` naming it."""
    path = Path(path)
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise RunFileError(f"{path}, line {number}, is not valid JSON ({err})") from None
    return records


# ----------------------------------------------------------------------------- provenance


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed versions of `packages` (distribution names); absent ones are left out."""
    found = {}
    for name in packages:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(packages: Iterable[str] = ()) -> dict[str, Any]:
    """CPU model, cores, 1-minute load (other work running), Python, OS and `packages`' versions.

    Every benchmark and run stamps its JSON with this, so the writeup can name the machine.
    """
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_1m": load,
            "python": platform.python_version(), "platform": platform.platform(),
            **package_versions(packages)}


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """The commit of the project's checkout, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd or Path(__file__).resolve().parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def utc_now() -> str:
    """The current time, ISO 8601 in UTC (run.json's timestamps)."""
    return datetime.now(timezone.utc).isoformat()
