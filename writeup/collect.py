"""Read a run directory and a benchmark folder into one plain dict (files only, no project code).

What is read, relative to the run directory (names from `rundir`, the one place they are
spelled):

    config.yaml, run.json, train_summary.json, eval_during_training.jsonl
    monitor/*.monitor.csv                     per-episode training logs (SB3 Monitor)
    eval_heldout/summary.json                 policy, oracle and random on the held-out split
    eval_heldout/sweep_<factor>.json / .png   robustness sweeps
    failures_heldout/index.json               failure videos (`embodied video --failures`)
    video_policy.gif / video_policy.mp4       the recorded policy
    policy.parity.json                        export parity (ONNX / TorchScript vs PyTorch)
    deploy/deploy_report.json / deploy_latency.png

and in the benchmark folder: bench_env.json, bench_train.json, bench_learn.json,
bench_infer.json, bench_loop.json. A file that is absent is listed under `missing`; one that
cannot be parsed under `errors`; neither stops the notes from being written. A folder that
holds none of the run's files is refused: there is nothing to write up.

Two inputs are optional extras, read when present but never listed as missing, since each
costs many training runs: bench_sweep.json (`embodied bench sweep`, Ray's overhead and the
projected cost of a sweep) and a sweep folder (`embodied sweep`): its sweep.json under the
name `sweep.json`, and its two plots, sweep_curves.png and sweep_final.png. Their sections
name the command that produces them.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import yaml

import rundir

HELDOUT_DIR = rundir.eval_dir_name("heldout")
HELDOUT_SUMMARY = f"{HELDOUT_DIR}/{rundir.SUMMARY_FILE}"
SWEEP_STEM = rundir.sweep_file("", "")
"""What every sweep file's name starts with (`sweep_`); the factor follows it."""
SWEEP_PREFIX = f"{HELDOUT_DIR}/{SWEEP_STEM}"
SWEEP_PATTERN = f"{HELDOUT_DIR}/{rundir.sweep_file('*')}"
SWEEP_PNG_PATTERN = f"{HELDOUT_DIR}/{rundir.sweep_file('*', '.png')}"
FAILURES_INDEX = f"{rundir.failures_dir_name('heldout')}/{rundir.FAILURES_INDEX_FILE}"
RUN_FILES = (
    rundir.CONFIG_FILE,
    rundir.RUN_FILE,
    rundir.TRAIN_SUMMARY_FILE,
    rundir.EVAL_DURING_TRAINING_FILE,
    HELDOUT_SUMMARY,
    FAILURES_INDEX,
    rundir.PARITY_FILE,
    rundir.DEPLOY_REPORT_FILE,
)
BENCH_KINDS = ("env", "train", "learn", "infer", "loop")
"""The benchmarks the notes report (of `rundir.BENCH_KINDS`)."""
BENCH_FILES = tuple(rundir.bench_file(kind) for kind in BENCH_KINDS)
SWEEP_BENCH = rundir.bench_file("sweep")
"""`embodied bench sweep`'s result: an optional input (see the module docstring)."""
SEEDS = rundir.SWEEP_FILE
"""The name a sweep folder's sweep.json is collected under."""
SEEDS_MEDIA = {"seeds_curves": rundir.SWEEP_CURVES_FIGURE, "seeds_final": rundir.SWEEP_FINAL_FIGURE}
"""Media key -> the sweep folder's plot (learning curves per seed, final test success)."""
MONITOR_PATTERN = rundir.MONITOR_PATTERN
VIDEO_GIF = rundir.video_file("policy", ".gif")
VIDEO_MP4 = rundir.video_file("policy")
DEPLOY_PNG = rundir.DEPLOY_FIGURE_FILE
DEFAULT_BENCH_DIR = rundir.DEFAULT_BENCH_DIR
MONITOR_HEAD = ("r", "l", "t")
"""SB3 Monitor's first three columns: episode return, length (steps), end time (s since the
monitor started)."""


_MODE_NAME = re.compile(r"[a-z0-9_]+")


def failure_videos(index: Any) -> list[tuple[int, Mapping[str, Any]]]:
    """(position, entry) of the first video of each failure mode in a failure-video index,
    in index order: the one the notes show a frame strip of. Entries whose mode is not a plain
    name or whose file is not a bare file name are skipped (the mode names a figure file)."""
    videos = index.get("videos") if isinstance(index, Mapping) else None
    seen: set[str] = set()
    out = []
    for i, video in enumerate(videos if isinstance(videos, list) else []):
        if not isinstance(video, Mapping):
            continue
        mode, file = video.get("failure_mode"), video.get("file")
        if (isinstance(mode, str) and _MODE_NAME.fullmatch(mode) and mode not in seen
                and isinstance(file, str) and file and PurePath(file).name == file):
            seen.add(mode)
            out.append((i, video))
    return out


def parse_file(path: Path) -> Any:
    """JSON, JSON Lines (a list of objects) or YAML, by suffix."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if path.suffix in (".yaml", ".yml"):
        return yaml.safe_load(text)
    return json.loads(text)


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "1.0")


def _episode(fields: Sequence[str], columns: Sequence[str] | None) -> dict[str, Any] | None:
    """One row as {r, l, t, success}, or None where it does not fit the columns."""
    if columns is None:  # no header seen: SB3's order with this project's info keys
        columns = (*MONITOR_HEAD, *rundir.MONITOR_INFO_KEYS)
        if len(fields) != len(columns):
            columns = MONITOR_HEAD if len(fields) >= len(MONITOR_HEAD) else columns
            fields = fields[:len(columns)]
    if len(fields) != len(columns):
        return None
    row = dict(zip(columns, fields))
    try:
        return {"r": float(row["r"]), "l": float(row["l"]), "t": float(row["t"]),
                "success": _truthy(row["success"]) if row.get("success") else None}
    except (KeyError, ValueError):
        return None


def parse_monitor(text: str) -> tuple[list[dict[str, Any]], list[int]]:
    """Episodes of an SB3 Monitor CSV, and the numbers of the lines that could not be read.

    A monitor file is a `#{json}` line, an `r,l,t,...` header, then one row per episode. A
    resumed run appends to it: sometimes a second `#` line and header mid-file, sometimes rows
    alone (older runs have no header at all; their columns are SB3's `r, l, t` followed by
    `rundir.MONITOR_INFO_KEYS`). Every row is read. Each restart of the monitor begins its
    times at 0 again (a `#` line, or a time smaller than the one before); the times of a
    restarted segment are moved to follow the previous segment's last episode, so `t` counts
    the monitor's running time without the pause between the two processes.

    Each episode is {"r", "l", "t", "success"}; `success` is None where the file has no such
    column. An unreadable last line (a row still being written while training runs) is left
    out without being reported; any other unreadable line is reported by its number (1-based).
    """
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    episodes: list[dict[str, Any]] = []
    bad: list[int] = []
    columns: list[str] | None = None
    offset = end = 0.0
    previous_t: float | None = None
    for number, line in lines:
        if line.startswith("#"):
            previous_t = None  # the monitor (re)started; its times restart at 0
            offset = end
            continue
        fields = next(csv.reader([line]))
        if tuple(fields[:len(MONITOR_HEAD)]) == MONITOR_HEAD:
            columns = fields
            continue
        episode = _episode(fields, columns)
        if episode is None:
            if number != lines[-1][0]:
                bad.append(number)
            continue
        if previous_t is not None and episode["t"] < previous_t:
            offset = end  # a restart without a `#` line
        previous_t = episode["t"]
        episode["t"] += offset
        end = episode["t"]
        episodes.append(episode)
    return episodes, bad


def read_monitor(path: Path) -> list[dict[str, Any]]:
    """Episodes of one SB3 Monitor CSV (see `parse_monitor`); unreadable lines are skipped."""
    return parse_monitor(path.read_text(encoding="utf-8"))[0]


def _load(files: dict[str, Any], sources: dict[str, str], missing: list[str],
          errors: dict[str, str], name: str, path: Path) -> None:
    if not path.is_file():
        missing.append(name)
        return
    try:
        files[name] = parse_file(path)
        sources[name] = str(path.resolve())
    except (OSError, ValueError, yaml.YAMLError) as err:
        errors[name] = f"{type(err).__name__}: {err}"


def _media(run: Path) -> dict[str, Any]:
    def present(rel: str) -> str | None:
        path = run / rel
        return str(path.resolve()) if path.is_file() else None

    sweeps = {p.stem.removeprefix(SWEEP_STEM): str(p.resolve())
              for p in sorted(run.glob(SWEEP_PNG_PATTERN))}
    return {"video_gif": present(VIDEO_GIF), "video_mp4": present(VIDEO_MP4),
            "deploy_png": present(DEPLOY_PNG), "sweep_png": sweeps}


def _monitor(run: Path, errors: dict[str, str],
             skipped: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    monitor = {}
    for path in sorted(run.glob(MONITOR_PATTERN)):
        name = path.relative_to(run).as_posix()
        try:
            episodes, bad = parse_monitor(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            errors[name] = f"{type(err).__name__}: {err}"
            continue
        monitor[path.name.removesuffix(".monitor.csv")] = episodes
        if bad:
            shown = ", ".join(str(n) for n in bad[:5]) + (", ..." if len(bad) > 5 else "")
            skipped[name] = f"{len(bad)} unreadable line(s): {shown}"
    return monitor


def _statistic(config: Any, key: str) -> float:
    """A configuration's test-success statistic in sweep.json (-inf where it has none)."""
    agg = config.get("success_rate") if isinstance(config, Mapping) else None
    value = agg.get(key) if isinstance(agg, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else float("-inf")


def sweep_run(sweep_dir: str | os.PathLike[str]) -> Path:
    """The trial of a sweep folder that stands for the sweep in the rest of the notes: a
    typical seed of the best configuration, not its luckiest one.

    The configuration with the highest interquartile mean of test success (the first on a
    tie), and of its scored seeds the one at the lower median of test success; a sweep with
    no scored trial gives its first trial that has a run directory.

    Raises:
        rundir.RunFileError: no sweep.json, or no trial's run directory exists.
    """
    folder = Path(sweep_dir)
    report = rundir.read_json(folder / rundir.SWEEP_FILE)
    report = report if isinstance(report, Mapping) else {}
    trials = [t for t in report.get("trials") or [] if isinstance(t, Mapping)
              and isinstance(t.get("run_dir"), str) and (folder / t["run_dir"]).is_dir()]
    if not trials:
        raise rundir.RunFileError(
            f"{folder / rundir.SWEEP_FILE} names no trial whose run directory exists; pass a "
            "run directory as RUN_DIR and this folder as --sweep")
    configs = [c for c in report.get("configs") or [] if isinstance(c, Mapping)]
    best = max(configs, key=lambda c: _statistic(c, "iqm"), default={})

    def test(t: Mapping[str, Any]) -> float | None:
        score = t.get("test")
        score = score.get("success_rate") if isinstance(score, Mapping) else None
        return float(score) if isinstance(score, (int, float)) else None

    scored = sorted((t for t in trials if t.get("config_id") == best.get("config_id")
                     and test(t) is not None), key=lambda t: (test(t), t.get("seed", 0)))
    chosen = scored[(len(scored) - 1) // 2] if scored else trials[0]
    return folder / chosen["run_dir"]


def _sweep(sweep_dir: Path, files: dict[str, Any], sources: dict[str, str],
           errors: dict[str, str]) -> dict[str, str | None]:
    """Load a sweep folder's sweep.json (required once a folder is named) and its plots."""
    if not (sweep_dir / rundir.SWEEP_FILE).is_file():
        raise rundir.RunFileError(
            f"{sweep_dir} holds no {rundir.SWEEP_FILE}; pass a folder that `embodied sweep` "
            f"finished, or continue it with `embodied sweep --resume {sweep_dir}`")
    _load(files, sources, [], errors, SEEDS, sweep_dir / rundir.SWEEP_FILE)
    return {key: str((sweep_dir / name).resolve()) if (sweep_dir / name).is_file() else None
            for key, name in SEEDS_MEDIA.items()}


def collect(run_dir: str | os.PathLike[str],
            bench_dir: str | os.PathLike[str] = DEFAULT_BENCH_DIR,
            sweep_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Every artifact of `run_dir`, `bench_dir` and the sweep folder `sweep_dir` (None: no
    sweep) that exists, parsed.

    Returns a dict with `run_dir` and `bench_dir` (as given), `files` ({name: parsed content};
    run files by their path inside the run, benchmark files by file name), `sources` ({name:
    absolute path}), `missing` and `errors` (names), `skipped` ({monitor file: lines it could
    not read}), `monitor` ({file stem: episodes}), `media` (paths of the GIF, MP4, sweep PNGs,
    latency PNG and the sweep folder's two plots, or None), `sweep_dir` (as given, or None)
    and empty `figures` / `figure_files` that `writeup.build.with_figures` fills.

    Raises:
        FileNotFoundError: `run_dir` or `sweep_dir` is not a directory.
        rundir.RunFileError: `run_dir` holds none of a run's files, or `sweep_dir` no
            sweep.json.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {run} does not exist; train one with "
                                "`embodied train` or pass an existing run directory")
    bench = Path(bench_dir)
    files: dict[str, Any] = {}
    sources: dict[str, str] = {}
    missing: list[str] = []
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name in RUN_FILES:
        _load(files, sources, missing, errors, name, run / name)
    sweeps = sorted(run.glob(SWEEP_PATTERN))
    for path in sweeps:
        _load(files, sources, missing, errors, path.relative_to(run).as_posix(), path)
    if not sweeps:
        missing.append(SWEEP_PATTERN)
    monitor = _monitor(run, errors, skipped)
    media = _media(run)
    if not (files or errors or monitor
            or any(media[k] for k in ("video_gif", "video_mp4", "deploy_png"))):
        raise rundir.RunFileError(
            f"{run} holds no run files (none of {', '.join(RUN_FILES)}, {MONITOR_PATTERN}): "
            "nothing to write up; pass a run directory that `embodied train` wrote")
    for name in BENCH_FILES:
        _load(files, sources, missing, errors, name, bench / name)
    _load(files, sources, [], errors, SWEEP_BENCH, bench / SWEEP_BENCH)  # optional
    if sweep_dir is not None:
        if not Path(sweep_dir).is_dir():
            raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist; run "
                                    "`embodied sweep` or pass the folder it wrote")
        media.update(_sweep(Path(sweep_dir), files, sources, errors))
    if not monitor:
        missing.append(MONITOR_PATTERN)
    return {"run_dir": str(run_dir), "bench_dir": str(bench_dir),
            "sweep_dir": None if sweep_dir is None else str(sweep_dir), "files": files,
            "sources": sources, "missing": missing, "errors": errors, "skipped": skipped,
            "monitor": monitor, "media": media, "figures": {}, "figure_files": {}}
