"""The deployment report: `deploy_report.json` and its latency figure, from `run_deploy`'s dict.

`latency_figure` draws the sense->act and inference latency histograms the loop kept (log
milliseconds) against the control period; `write_deploy_report` writes both files, each
atomically, into the run's `deploy/` folder (or any folder given).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

import rundir

REPORT_NAME = Path(rundir.DEPLOY_REPORT_FILE).name
FIGURE_NAME = Path(rundir.DEPLOY_FIGURE_FILE).name


def _fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def latency_figure(report: dict[str, Any]) -> Figure:
    """A matplotlib Figure of the sense->act and inference latency histograms (log x)."""
    hist = report["latency_histogram"]
    edges = np.asarray(hist["edges_ms"])
    # An explicit Figure (Agg when saved): no pyplot global state, no display needed.
    fig = Figure(figsize=(7, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for key, colour in (("total", "tab:blue"), ("inference", "tab:orange")):
        ax.stairs(hist[key], edges, label=f"{key} (p99 "
                  f"{_fmt_ms(report['latency_ms'][key]['p99'])})", color=colour, fill=False)
    p99 = report["latency_ms"]["total"]["p99"]
    if p99 is not None:
        ax.axvline(p99, color="tab:blue", linestyle="--", linewidth=1)
    ax.axvline(report["period_ms"], color="tab:red", linewidth=1,
               label=f"period {report['period_ms']:.0f} ms")
    ax.set_xscale("log")
    used = np.flatnonzero(np.add(hist["total"], hist["inference"]))
    if used.size:
        ax.set_xlim(edges[used[0]] / 2, max(edges[used[-1] + 1], report["period_ms"]) * 2)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title(f"Camera frame -> /cmd_vel at {report['rate_hz']:g} Hz, "
                 f"{report['latency_samples']} frames (warm-up excluded)")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def write_deploy_report(report: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write `deploy_report.json` and `deploy_latency.png` into `out_dir`, each atomically.

    Returns:
        {"json": path, "histogram": path}.
    """
    out_dir = Path(out_dir)
    json_path = rundir.write_json(out_dir / REPORT_NAME, report)
    fig = latency_figure(report)
    png_path = rundir.atomic_write(out_dir / FIGURE_NAME,
                                   lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return {"json": json_path, "histogram": png_path}
