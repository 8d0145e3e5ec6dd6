"""Read a run directory and a benchmark folder into one plain dict (files only, no project code).

What is read, relative to the run directory:

    config.yaml, run.json, train_summary.json, eval_during_training.jsonl
    monitor/*.monitor.csv                     per-episode training logs (SB3 Monitor)
    eval_heldout/summary.json                 policy, oracle and random on the held-out split
    eval_heldout/sweep_<factor>.json / .png   robustness sweeps
    video_policy.gif / video_policy.mp4       the recorded policy
    policy.parity.json                        export parity (ONNX / TorchScript vs PyTorch)
    deploy/deploy_report.json / deploy_latency.png

and in the benchmark folder: bench_env.json, bench_train.json, bench_learn.json,
bench_infer.json, bench_loop.json. A file that is absent is listed under `missing`; one that
cannot be parsed under `errors`; neither stops the notes from being written.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import yaml

RUN_FILES = (
    "config.yaml",
    "run.json",
    "train_summary.json",
    "eval_during_training.jsonl",
    "eval_heldout/summary.json",
    "policy.parity.json",
    "deploy/deploy_report.json",
)
BENCH_FILES = ("bench_env.json", "bench_train.json", "bench_learn.json", "bench_infer.json",
               "bench_loop.json")
SWEEP_PATTERN = "eval_heldout/sweep_*.json"
MONITOR_PATTERN = "monitor/*.monitor.csv"
VIDEO_GIF = "video_policy.gif"
VIDEO_MP4 = "video_policy.mp4"
DEPLOY_PNG = "deploy/deploy_latency.png"
DEFAULT_BENCH_DIR = "runs/bench"


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


def read_monitor(path: Path) -> list[dict[str, float]]:
    """Episodes of one SB3 Monitor CSV (its first line is a JSON comment): r, l, t, success.

    `success` is None where the file has no such column.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    body = [line for line in lines if not line.startswith("#")]
    rows = []
    for row in csv.DictReader(body):
        try:
            rows.append({"r": float(row["r"]), "l": float(row["l"]), "t": float(row["t"]),
                         "success": _truthy(row["success"]) if row.get("success") else None})
        except (KeyError, TypeError, ValueError):
            continue  # a half-written last line while training is still running
    return rows


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

    sweeps = {p.stem.removeprefix("sweep_"): str(p.resolve())
              for p in sorted(run.glob("eval_heldout/sweep_*.png"))}
    return {"video_gif": present(VIDEO_GIF), "video_mp4": present(VIDEO_MP4),
            "deploy_png": present(DEPLOY_PNG), "sweep_png": sweeps}


def collect(run_dir: str | os.PathLike[str],
            bench_dir: str | os.PathLike[str] = DEFAULT_BENCH_DIR) -> dict[str, Any]:
    """Every artifact of `run_dir` and `bench_dir` that exists, parsed.

    Returns a dict with `run_dir` and `bench_dir` (as given), `files` ({name: parsed content};
    run files by their path inside the run, benchmark files by file name), `sources` ({name:
    absolute path}), `missing` and `errors` (names), `monitor` ({file stem: episodes}),
    `media` (paths of the GIF, MP4, sweep PNGs and latency PNG, or None) and empty `figures`
    / `figure_files` that `writeup.build.with_figures` fills.

    Raises:
        FileNotFoundError: `run_dir` is not a directory.
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
    for name in RUN_FILES:
        _load(files, sources, missing, errors, name, run / name)
    sweeps = sorted(run.glob(SWEEP_PATTERN))
    for path in sweeps:
        _load(files, sources, missing, errors, path.relative_to(run).as_posix(), path)
    if not sweeps:
        missing.append(SWEEP_PATTERN)
    for name in BENCH_FILES:
        _load(files, sources, missing, errors, name, bench / name)
    monitor = {p.name.removesuffix(".monitor.csv"): read_monitor(p)
               for p in sorted(run.glob(MONITOR_PATTERN))}
    if not monitor:
        missing.append(MONITOR_PATTERN)
    return {"run_dir": str(run_dir), "bench_dir": str(bench_dir), "files": files,
            "sources": sources, "missing": missing, "errors": errors, "monitor": monitor,
            "media": _media(run), "figures": {}, "figure_files": {}}
