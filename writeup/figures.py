"""Figures of the notes, drawn from the collected artifacts (matplotlib Agg, imageio).

Each figure is written through `rundir.atomic_write` (temp file + rename), so a reader never
sees half a PNG. Figures whose data is absent are skipped; the notes then say which command
produces it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import rundir
from writeup import architecture
from writeup.collect import FAILURES_INDEX, VIDEO_GIF, failure_videos

ROLLING_EPISODES = 20
"""Training success is shown as a rolling mean over this many episodes."""
STRIP_FRAMES = 6
"""Frames in the video strip, evenly spaced over the recording."""
FAILURE_STRIP_FRAMES = 4
"""Frames in the strip of each failure mode, evenly spaced over its episode."""
FAILURE_FRAME_WIDTH_PX = 480
"""Width each failure-video frame is scaled to in its strip (the video's camera, map and
chase panels are over 800 px wide together)."""
MAX_GIF_BYTES = 6_000_000
"""A larger GIF is left out of the notes (the HTML embeds it), the frame strip stays."""

FILENAMES = {
    "architecture": "architecture.png",
    "learning_curves": "learning_curves.png",
    "learning_by_method": "learning_by_method.png",
    "frame_strip": "frame_strip.png",
    "video_gif": VIDEO_GIF,
    "deploy_latency": "deploy_latency.png",
    "seeds_curves": "seeds_curves.png",
    "seeds_final": "seeds_final.png",
}
"""Figure name -> file name; sweeps are `sweep_<factor>` -> `sweep_<factor>.png`, failure
strips `failure_<mode>` -> `failure_<mode>.png`."""


def _save(fig: Figure, path: Path) -> Path:
    return rundir.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _copy(src: str, path: Path) -> Path:
    return rundir.atomic_write(path, lambda tmp: shutil.copyfile(src, tmp))


# -------------------------------------------------------------------------------- series


def monitor_series(monitor: Mapping[str, Sequence[Mapping[str, Any]]],
                   window: int = ROLLING_EPISODES) -> dict[str, np.ndarray]:
    """Training episodes of all envs merged in time order: cumulative env steps at each
    episode's end, its wall-clock time (s since the env started) and the rolling success.

    Empty arrays when no episode carries a `success` value.
    """
    episodes = sorted((e for rows in monitor.values() for e in rows
                       if e.get("success") is not None), key=lambda e: e["t"])
    if not episodes:
        empty = np.zeros(0)
        return {"timesteps": empty, "wall_clock_s": empty, "success_rate": empty}
    success = np.array([1.0 if e["success"] else 0.0 for e in episodes])
    kernel = np.ones(min(window, len(success)))
    rolling = np.convolve(success, kernel, mode="full")[:len(success)]
    counts = np.minimum(np.arange(1, len(success) + 1), len(kernel))
    return {"timesteps": np.cumsum([e["l"] for e in episodes]),
            "wall_clock_s": np.array([e["t"] for e in episodes]),
            "success_rate": rolling / counts}


def _eval_series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list, list]:
    usable = [r for r in rows if r.get(key) is not None and r.get("success_rate") is not None]
    return [r[key] for r in usable], [r["success_rate"] for r in usable]


# -------------------------------------------------------------------------------- figures


def learning_figure(evals: Sequence[Mapping[str, Any]],
                    monitor: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Success rate against env steps and against wall-clock: periodic held-out evaluations
    and the rolling success of training episodes."""
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    train = monitor_series(monitor)
    for ax, key, label in ((axes[0], "timesteps", "env steps"),
                           (axes[1], "wall_clock_s", "wall-clock (s)")):
        if len(train[key]):
            ax.plot(train[key], train["success_rate"], color="tab:gray", linewidth=1.0,
                    label=f"training episodes (rolling {ROLLING_EPISODES})")
        x, y = _eval_series(evals, key)
        if x:
            ax.plot(x, y, marker="o", color="tab:blue", label="held-out evaluation")
        ax.set_xlabel(label)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success rate")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle("Learning curves")
    return fig


def method_figure(rows: Sequence[Mapping[str, Any]], budget_s: float | None) -> Figure:
    """Held-out success against wall-clock, one line per training method (bench_learn)."""
    fig = Figure(figsize=(7.0, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    right = budget_s or 0.0
    for row in rows:
        x, y = _eval_series(row.get("curve") or [], "wall_clock_s")
        if x:
            ax.plot(x, y, marker="o", markersize=3, label=str(row.get("method")))
            right = max(right, max(x))
    ax.axhline(0.9, color="tab:red", linewidth=0.8, linestyle="--", label="90 % success")
    ax.set_xlim(0, right * 1.03 or None)
    ax.set_xlabel("wall-clock (s)")
    ax.set_ylabel("held-out validation success")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Wall-clock to success per method")
    return fig


def read_frames(media: Mapping[str, Any]) -> np.ndarray | None:
    """RGB frames (N, H, W, 3) of the recorded GIF, else the MP4; None if neither reads."""
    import imageio.v3 as iio

    for key in ("video_gif", "video_mp4"):
        path = media.get(key)
        if not path:
            continue
        try:
            frames = np.stack(list(iio.imiter(path)))
        except (OSError, ValueError, RuntimeError):
            continue
        if frames.ndim == 4 and len(frames):
            return frames[..., :3]
    return None


def frame_strip(frames: np.ndarray, count: int = STRIP_FRAMES, gap: int = 4) -> np.ndarray:
    """`count` evenly spaced frames side by side on a white background, (H, W', 3) uint8."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round()
                      .astype(int))
    h, w = frames.shape[1:3]
    strip = np.full((h, len(picks) * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for k, i in enumerate(picks):
        strip[:, k * (w + gap):k * (w + gap) + w] = frames[i].astype(np.uint8)
    return strip


def sample_frames(path: str | os.PathLike[str], count: int, total: int | None = None,
                  width: int | None = None) -> np.ndarray | None:
    """`count` frames evenly spaced over a video, each scaled to `width` px (aspect kept);
    (N, H, W, 3) uint8, or None where the file does not decode. `total` (its frame count, if
    known) spares a first pass over the file; only the picked frames are held."""
    import imageio.v3 as iio
    from PIL import Image

    try:
        if total is None or total < 1:
            total = sum(1 for _ in iio.imiter(path))
        picks = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
        kept = []
        for i, frame in enumerate(iio.imiter(path)):
            if i in picks:
                image = Image.fromarray(np.asarray(frame)[..., :3])
                if width is not None and image.width != width:
                    height = max(1, round(image.height * width / image.width))
                    image = image.resize((width, height), Image.Resampling.LANCZOS)
                kept.append(np.asarray(image, dtype=np.uint8))
    except (OSError, ValueError, RuntimeError):
        return None
    return np.stack(kept) if kept else None


def failure_strips(data: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """One strip per failure mode, from the first video of that mode in the failure index
    (`collect.failure_videos`); {`failure_<mode>`: path}. Videos that do not decode are
    skipped."""
    index = data.get("files", {}).get(FAILURES_INDEX)
    source = data.get("sources", {}).get(FAILURES_INDEX)
    if not source:
        return {}
    folder = Path(source).parent
    made = {}
    for _, video in failure_videos(index):
        total = video.get("frames")
        frames = sample_frames(folder / video["file"], FAILURE_STRIP_FRAMES,
                               total if isinstance(total, int) else None,
                               FAILURE_FRAME_WIDTH_PX)
        if frames is not None:
            name = f"failure_{video['failure_mode']}"
            made[name] = _write_png(frame_strip(frames, FAILURE_STRIP_FRAMES), out / f"{name}.png")
    return made


def _write_png(array: np.ndarray, path: Path) -> Path:
    import imageio.v3 as iio

    return rundir.atomic_write(path, lambda tmp: iio.imwrite(tmp, array, extension=".png"))


def make_figures(data: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write every figure the data supports into `out_dir`; {figure name: path}.

    Names: architecture (always), learning_curves, learning_by_method, frame_strip,
    video_gif, failure_<mode>, sweep_<factor>, deploy_latency, seeds_curves, seeds_final.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, media = data.get("files", {}), data.get("media", {})
    made: dict[str, Path] = {}
    made["architecture"] = rundir.atomic_write(out / FILENAMES["architecture"],
                                        lambda tmp: architecture.draw(str(tmp)))
    evals = files.get(rundir.EVAL_DURING_TRAINING_FILE) or []
    monitor = data.get("monitor") or {}
    if evals or len(monitor_series(monitor)["timesteps"]):
        made["learning_curves"] = _save(learning_figure(evals, monitor),
                                        out / FILENAMES["learning_curves"])
    learn = files.get(rundir.bench_file("learn")) or {}
    if any(row.get("curve") for row in learn.get("rows") or []):
        made["learning_by_method"] = _save(method_figure(learn["rows"], learn.get("budget_s")),
                                           out / FILENAMES["learning_by_method"])
    frames = read_frames(media)
    if frames is not None:
        made["frame_strip"] = _write_png(frame_strip(frames), out / FILENAMES["frame_strip"])
    gif = media.get("video_gif")
    if gif and os.path.getsize(gif) <= MAX_GIF_BYTES:
        made["video_gif"] = _copy(gif, out / FILENAMES["video_gif"])
    made.update(failure_strips(data, out))
    for factor, png in sorted((media.get("sweep_png") or {}).items()):
        made[f"sweep_{factor}"] = _copy(png, out / f"sweep_{factor}.png")
    if media.get("deploy_png"):
        made["deploy_latency"] = _copy(media["deploy_png"], out / FILENAMES["deploy_latency"])
    for name in ("seeds_curves", "seeds_final"):  # the sweep folder's plots, as drawn there
        if media.get(name):
            made[name] = _copy(media[name], out / FILENAMES[name])
    return made
