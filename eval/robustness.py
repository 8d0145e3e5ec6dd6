"""Robustness sweeps: success and SPL as one randomization factor (or all of them) grows.

A sweep scores each policy at every strength on the same episode seeds, so the layouts repeat
across strengths and only the swept factor changes. Files written (each atomically):
`sweep_<factor>.json` (one row per strength and policy), `sweep_<factor>.png` (success and
SPL against strength with 95 % bands) and `sweep_<factor>_episodes.jsonl` (every record).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import rundir
from envs.config import GROUPS, to_dict
from eval import metrics
from eval.report import check_policies, run_policy, setup
from eval.rollout import make_eval_env
from policies.threads import torch_threads

SWEEP_FACTORS = ("all", *GROUPS)
"""`all` scales every randomization group together; a group name scales that group alone."""

SWEEP_METRICS = ("success_rate", "spl")
"""Metrics kept per sweep row (each with its `_ci95` interval)."""


def parse_sweep(text: str) -> tuple[str, tuple[float, ...]]:
    """`"strength=0,0.5,1"` -> `("all", (0.0, 0.5, 1.0))`; `"lighting=0,1,2"` -> one group.

    The left side is `strength` or `all` (every group) or a group from `envs.config.GROUPS`;
    the right side is a comma-separated list of strengths >= 0.
    """
    usage = (f"write FACTOR=S1,S2,... with FACTOR one of strength, {', '.join(SWEEP_FACTORS)} "
             "and strengths >= 0, e.g. strength=0,0.5,1 or lighting=0,1,2")
    factor, sep, values = text.partition("=")
    factor = factor.strip()
    if not sep or not factor:
        raise ValueError(f"bad sweep {text!r}: {usage}")
    factor = "all" if factor == "strength" else factor
    if factor not in SWEEP_FACTORS:
        raise ValueError(f"bad sweep {text!r}: unknown factor {factor!r}; {usage}")
    try:
        strengths = tuple(float(v) for v in values.split(","))
    except ValueError:
        raise ValueError(f"bad sweep {text!r}: strengths must be numbers; {usage}") from None
    if not all(math.isfinite(s) and s >= 0 for s in strengths):
        raise ValueError(f"bad sweep {text!r}: strengths must be finite and >= 0; {usage}")
    return factor, strengths


def strength_option(factor: str, strength: float) -> float | dict[str, float]:
    """The `reset(options={"strength": ...})` value that scales `factor` (others at 0)."""
    if factor == "all":
        return float(strength)
    if factor not in GROUPS:
        raise ValueError(f"unknown sweep factor {factor!r}; use one of {list(SWEEP_FACTORS)}")
    return {factor: float(strength)}


def sweep_rows(records: Mapping[tuple[float, str], Sequence[Mapping[str, Any]]], seed: int = 0
               ) -> list[dict[str, Any]]:
    """One row per (strength, policy): episodes, errors and `SWEEP_METRICS` with their CIs."""
    rows = []
    for (strength, name), recs in records.items():
        s = metrics.summarize(recs, seed)
        row: dict[str, Any] = {"strength": strength, "policy": name,
                               "episodes": s["episodes"], "errors": s["errors"]}
        for m in SWEEP_METRICS:
            row[m] = s[m]
            row[f"{m}_ci95"] = s[f"{m}_ci95"]
        rows.append(row)
    return rows


def plot_sweep(rows: Sequence[Mapping[str, Any]], factor: str, path: str | os.PathLike[str]
               ) -> Path:
    """Success rate and SPL against strength, one line per policy with its 95 % band (PNG)."""
    # The figure is drawn on an explicit Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(SWEEP_METRICS), sharex=True)
    names = list(dict.fromkeys(r["policy"] for r in rows))
    for ax, m in zip(axes, SWEEP_METRICS):
        for name in names:
            mine = sorted((r for r in rows if r["policy"] == name), key=lambda r: r["strength"])
            x = [r["strength"] for r in mine]
            y = [np.nan if r[m] is None else r[m] for r in mine]
            lo = [np.nan if r[f"{m}_ci95"][0] is None else r[f"{m}_ci95"][0] for r in mine]
            hi = [np.nan if r[f"{m}_ci95"][1] is None else r[f"{m}_ci95"][1] for r in mine]
            (line,) = ax.plot(x, y, marker="o", label=name)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel(f"randomization strength ({factor})")
        ax.set_ylabel(m.replace("_", " "))
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left")
    fig.suptitle(f"Robustness sweep: {factor}")
    return rundir.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def sweep(
    target: str | os.PathLike[str] | None,
    factor: str = "all",
    strengths: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0),
    split: str = "heldout",
    episodes: int = 50,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    policies: Sequence[str] = ("policy", "oracle"),
    progress: bool = True,
) -> dict[str, Any]:
    """Success and SPL as one randomization factor (or all of them) grows stronger.

    `factor` is `all` (every group scaled to the strength) or one group of
    `envs.config.GROUPS` (that group scaled, every other group at 0, so its effect is seen
    alone). Each strength uses the same episode seeds, so the layouts repeat across strengths
    and only the swept factor changes. Returns `{factor, strengths, split, episodes, seed,
    checkpoint, env, rows}` with one row per (strength, policy), see `sweep_rows`. With
    `out_dir`, writes `sweep_<factor>.json` (that dict), `sweep_<factor>.png` and
    `sweep_<factor>_episodes.jsonl` (every record, tagged with `strength` and `policy`).
    """
    names = check_policies(policies)
    if factor not in SWEEP_FACTORS:
        raise ValueError(f"unknown sweep factor {factor!r}; use one of {list(SWEEP_FACTORS)}")
    levels = tuple(float(s) for s in strengths)
    if not levels or any(not math.isfinite(s) or s < 0 for s in levels):
        raise ValueError(f"strengths must be a non-empty list of numbers >= 0, got {strengths}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    prepared = setup(target, split, names)
    env = make_eval_env(prepared.env_cfg, prepared.continuous)
    records: dict[tuple[float, str], list[dict[str, Any]]] = {}
    with contextlib.closing(env), torch_threads(1):
        for s in levels:
            options = {"strength": strength_option(factor, s)}
            for name in names:
                records[(s, name)] = run_policy(name, prepared, env, episodes, seed, options,
                                                progress, f"{factor}={s:g} {name}")
    data: dict[str, Any] = {
        "factor": factor, "strengths": list(levels), "split": split, "episodes": episodes,
        "seed": seed, "checkpoint": str(prepared.loaded.path) if prepared.loaded else None,
        "env": to_dict(prepared.env_cfg), "rows": sweep_rows(records, seed),
    }
    if out_dir is not None:
        out = Path(out_dir)
        rundir.write_json(out / rundir.sweep_file(factor), data)
        plot_sweep(data["rows"], factor, out / rundir.sweep_file(factor, ".png"))
        rundir.write_jsonl(out / rundir.sweep_file(factor, "_episodes.jsonl"),
                           ({"strength": s, "policy": name, **r}
                            for (s, name), recs in records.items() for r in recs))
    return data
