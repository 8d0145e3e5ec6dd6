"""Statistics across training seeds: mean, interquartile mean, worst seed, stratified-bootstrap
intervals and the probability of improvement (Agarwal et al. 2021, "Deep Reinforcement
Learning at the Edge of the Statistical Precipice").

Why scipy and not `rliable`: rliable implements this protocol, but its last release imports
only with pandas < 3, and the project's environment (Ray Tune among others) brings pandas 3.
`scipy.stats.trim_mean(x, 0.25)` is the interquartile mean and `scipy.stats.bootstrap` with one
sample per stratum resamples each stratum on its own, which is rliable's stratified bootstrap;
both live in a well-kept library the project already depends on.

Shapes. A score array holds one row per run (training seed) and one column per task: here a
task is one test set (the `heldout` test episodes), so a configuration's scores are usually a
column of seed scores, `(n_seeds,)` or `(n_seeds, 1)`. Stratification is by task: runs are
resampled within each column independently; with one task this is the plain bootstrap over
seeds. For the probability of improvement the two configurations are separate strata too.

Intervals are percentile intervals (rliable's default), 95 % by default, from a fixed
`seed`, so the same scores always give the same interval. With fewer than two runs in a
stratum an interval is undefined and reported as None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

import rundir

N_RESAMPLES = 10_000
"""Bootstrap resamples per interval (each statistic is vectorised over them)."""

CONFIDENCE = 0.95


def _matrix(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scores as a float `(runs, tasks)` array; a flat sequence is one task."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty (runs,) or (runs, tasks) array, "
                         f"got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("scores must be finite numbers (a missing run is left out, not NaN)")
    return x


def iqm(scores: Sequence[float] | np.ndarray, axis: int | None = None) -> Any:
    """Interquartile mean: the mean of the middle 50 % of the scores (25 % cut at each end).

    Over every run and task together when `axis` is None (rliable's aggregate IQM).
    """
    x = np.asarray(scores, dtype=np.float64)
    if axis is None:
        return float(stats.trim_mean(x.ravel(), 0.25))
    return stats.trim_mean(x, 0.25, axis=axis)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def stratified_bootstrap_ci(
    scores: Sequence[float] | np.ndarray,
    statistic: Callable[..., Any] = _mean,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile interval of `statistic` over all scores, resampling runs within each task.

    `statistic(x, axis=-1)` reduces the last axis (the pooled scores of one resample). None when
    a task has fewer than two runs, where a resample carries no information.
    """
    x = _matrix(scores)
    if x.shape[0] < 2:
        return None
    strata = tuple(x[:, t] for t in range(x.shape[1]))

    def pooled(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(np.concatenate(samples, axis=-1), axis=-1)

    res = stats.bootstrap(strata, pooled, n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", paired=False, vectorized=True,
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of one task over the last axes: x `(..., n)`, y `(..., m)`; ties count 1/2."""
    diff = x[..., :, None] - y[..., None, :]
    return np.mean((diff > 0) + 0.5 * (diff == 0), axis=(-2, -1))


def probability_of_improvement(x_scores: Sequence[float] | np.ndarray,
                               y_scores: Sequence[float] | np.ndarray) -> float:
    """P(X > Y): the chance that a run of X scores above a run of Y on a task, averaged over
    tasks (the normalised Mann-Whitney U statistic; ties count one half). 0.5 is a draw."""
    x, y = _matrix(x_scores), _matrix(y_scores)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X has {x.shape[1]} tasks and Y {y.shape[1]}; they must match")
    return float(np.mean([_poi(x[:, t], y[:, t]) for t in range(x.shape[1])]))


def probability_of_improvement_ci(
    x_scores: Sequence[float] | np.ndarray,
    y_scores: Sequence[float] | np.ndarray,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Interval of P(X > Y), resampling the runs of X and of Y within each task separately."""
    x, y = _matrix(x_scores), _matrix(y_scores)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X has {x.shape[1]} tasks and Y {y.shape[1]}; they must match")
    if x.shape[0] < 2 or y.shape[0] < 2:
        return None
    tasks = x.shape[1]
    strata = tuple(x[:, t] for t in range(tasks)) + tuple(y[:, t] for t in range(tasks))

    def poi(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([_poi(samples[t], samples[tasks + t]) for t in range(tasks)], axis=0)

    res = stats.bootstrap(strata, poi, n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", paired=False, vectorized=True,
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize_scores(scores: Sequence[float] | np.ndarray, seed: int = 0,
                     higher_is_better: bool = True) -> dict[str, Any]:
    """One configuration's scores across seeds: `n`, `scores`, `mean`, `iqm`, `worst`,
    `best`, and `mean_ci95` / `iqm_ci95` (`[lo, hi]` or None with fewer than two seeds).
    With `higher_is_better=False` (a rate of contacts, say) the worst seed is the highest."""
    x = _matrix(scores)
    low, high = float(np.min(x)), float(np.max(x))
    mean_ci = stratified_bootstrap_ci(x, _mean, seed=seed)
    iqm_ci = stratified_bootstrap_ci(x, lambda v, axis=-1: iqm(v, axis=axis), seed=seed)
    return {"n": int(x.shape[0]), "scores": x[:, 0].tolist() if x.shape[1] == 1 else x.tolist(),
            "mean": float(np.mean(x)), "iqm": iqm(x),
            "worst": low if higher_is_better else high,
            "best": high if higher_is_better else low,
            "mean_ci95": list(mean_ci) if mean_ci else None,
            "iqm_ci95": list(iqm_ci) if iqm_ci else None}


def compare(scores: Mapping[str, Sequence[float]], seed: int = 0) -> list[dict[str, Any]]:
    """P(X > Y) with its interval for every ordered pair of configurations in `scores`."""
    rows = []
    for x_name, x in scores.items():
        for y_name, y in scores.items():
            if x_name == y_name:
                continue
            ci = probability_of_improvement_ci(x, y, seed=seed)
            rows.append({"x": x_name, "y": y_name, "p": probability_of_improvement(x, y),
                         "ci95": list(ci) if ci else None})
    return rows


# ------------------------------------------------------------------------------ report


def _cell(value: float | None, ci: Sequence[float] | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.2f}"
    return f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else text


def format_markdown(configs: Sequence[Mapping[str, Any]],
                    improvement: Sequence[Mapping[str, Any]],
                    metrics: Sequence[tuple[str, str]] = (("success_rate", "success"),
                                                          ("spl", "SPL")),
                    title: str = "Test scores across seeds") -> str:
    """The Markdown report of a sweep (a pure function: data in, text out).

    `configs`: rows with `config_id`, `params` (a dict) and, per metric key, a
    `summarize_scores` output (or None when no seed was scored). `improvement`: `compare`
    rows for the first metric.
    """
    lines = [f"## {title}", "",
             "Per configuration across training seeds: mean, interquartile mean (IQM) and the "
             "worst seed, with 95 % stratified-bootstrap intervals (Agarwal et al. 2021).", ""]
    header = ["configuration", "seeds"]
    for _, label in metrics:
        header += [f"{label} mean [95 % CI]", f"{label} IQM [95 % CI]", f"{label} worst seed"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in configs:
        first = row.get(metrics[0][0]) or {}
        cells = [f"`{row['config_id']}`", str(first.get("n", 0))]
        for key, _ in metrics:
            agg = row.get(key) or {}
            cells += [_cell(agg.get("mean"), agg.get("mean_ci95")),
                      _cell(agg.get("iqm"), agg.get("iqm_ci95")), _cell(agg.get("worst"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| configuration | settings |", "|---|---|"]
    for row in configs:
        params = ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`"
                           for k, v in row["params"].items()) or "the base config"
        lines.append(f"| `{row['config_id']}` | {params} |")
    if improvement:
        ids = [row["config_id"] for row in configs]
        table = {(r["x"], r["y"]): r for r in improvement}
        lines += ["", f"Probability that the row's configuration beats the column's on a "
                      f"seed's test {metrics[0][1]} (0.5 = a draw) [95 % CI]:", "",
                  "| P(row > column) | " + " | ".join(f"`{i}`" for i in ids) + " |",
                  "|" + "---|" * (len(ids) + 1)]
        for x in ids:
            cells = ["–" if x == y or (x, y) not in table else
                     _cell(table[(x, y)]["p"], table[(x, y)]["ci95"]) for y in ids]
            lines.append(f"| `{x}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- plots


def plot_learning_curves(curves: Mapping[str, Mapping[int, Sequence[tuple[float, float]]]],
                         ylabel: str = "validation success"):
    """Learning curves: every seed thin, the across-seed mean bold, one colour per config.

    `curves[config][seed]` is a list of `(timesteps, value)`. The mean at a step averages the
    seeds whose curve spans it (linear interpolation between their evaluations), so a seed
    stopped early by the scheduler leaves the mean where it ends. Returns a matplotlib Figure.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    palette = [f"C{i}" for i in range(10)]
    for i, (name, seeds) in enumerate(curves.items()):
        colour = palette[i % len(palette)]
        series = [np.asarray(sorted(points), dtype=np.float64) for points in seeds.values()
                  if len(points)]
        for s in series:
            ax.plot(s[:, 0], s[:, 1], color=colour, linewidth=0.8, alpha=0.45, marker="o",
                    markersize=2)
        if not series:
            continue
        grid = np.unique(np.concatenate([s[:, 0] for s in series]))
        mean = []
        for t in grid:
            vals = [np.interp(t, s[:, 0], s[:, 1]) for s in series if s[0, 0] <= t <= s[-1, 0]]
            mean.append(np.mean(vals) if vals else np.nan)
        ax.plot(grid, mean, color=colour, linewidth=2.4, marker="o", markersize=4,
                label=f"{name} (mean of {len(series)})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Learning curves: each seed (thin) and the across-seed mean (bold)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_final_distribution(configs: Sequence[Mapping[str, Any]], key: str = "success_rate",
                            label: str = "test success"):
    """Final test score of every seed per configuration (dots), with the IQM and its 95 %
    interval (bar) and the mean (cross). `configs` as in `format_markdown`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 1.3 * len(configs) + 2.0), 4.0), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(0)  # horizontal jitter only, so dots on one value stay apart
    for i, row in enumerate(configs):
        agg = row.get(key)
        if not agg:
            continue
        scores = np.asarray(agg["scores"], dtype=np.float64).ravel()
        ax.scatter(i + rng.uniform(-0.12, 0.12, scores.size), scores, s=22, color=f"C{i % 10}",
                   alpha=0.8, zorder=3)
        if agg["iqm_ci95"]:
            lo, hi = agg["iqm_ci95"]
            ax.vlines(i + 0.25, lo, hi, color="black", linewidth=1.5)
        ax.hlines(agg["iqm"], i + 0.17, i + 0.33, color="black", linewidth=2.5)
        ax.scatter([i + 0.25], [agg["mean"]], marker="x", color="black", zorder=4)
    ax.set_xticks(range(len(configs)), [row["config_id"] for row in configs])
    ax.set_ylabel(label)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Per seed (dots); IQM (bar) with 95 % CI; mean (x)", fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> Any:
    """Write a Figure as PNG atomically (through the run directory's one writer)."""
    return rundir.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
