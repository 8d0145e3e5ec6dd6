"""Learning curves: the figure, the training summary and the periodic held-out evaluation."""

from __future__ import annotations

from writeup.collect import MONITOR_PATTERN
from writeup.commands import Commands, fill, produce
from writeup.doc import Doc, is_number
from writeup.sections.common import CONFIG, CURVE, TRAIN, image, join, table

MAX_CURVE_ROWS = 12
"""Rows of the evaluation-during-training table (evenly spaced, always the first and last)."""


def _indices(n: int, most: int) -> list[int]:
    if n <= most:
        return list(range(n))
    step = (n - 1) / (most - 1)
    return sorted({round(k * step) for k in range(most)})


def learning(doc: Doc, cmd: Commands) -> str:
    fig = image(doc, "learning_curves", "Success rate against env steps and wall-clock")
    if doc.has(TRAIN):
        t = (TRAIN,)
        ttg = doc.value(TRAIN, "time_to_90pct_heldout_s")
        rows = [["env steps", doc.num(*t, "timesteps", kind="int")],
                ["wall-clock (s)", doc.num(*t, "wall_clock_s", kind="s")],
                ["steps/s", doc.num(*t, "steps_per_s", kind="per_s")],
                ["best held-out validation success", doc.num(*t, "best_heldout_success")],
                ["best held-out validation SPL", doc.num(*t, "best_heldout_spl")],
                ["time to 90 % validation success (s)",
                 doc.num(*t, "time_to_90pct_heldout_s", kind="s") if is_number(ttg)
                 else "not reached"],
                ["envs", doc.num(*t, "n_envs", kind="int")],
                ["learner device", doc.text(*t, "device")]]
        train_table = table(["training", "value"], rows)
    else:
        train_table = fill(cmd.train())
    curve = doc.value(CURVE) or []
    if curve:
        curve_rows = [[doc.num(CURVE, i, "timesteps", kind="int"),
                       doc.num(CURVE, i, "wall_clock_s", kind="s"),
                       doc.num(CURVE, i, "success_rate"), doc.num(CURVE, i, "spl"),
                       doc.num(CURVE, i, "collisions_per_episode", kind="metric"),
                       doc.num(CURVE, i, "episodes", kind="int")]
                      for i in _indices(len(curve), MAX_CURVE_ROWS)]
        curve_table = table(["env steps", "wall-clock (s)", "held-out success", "SPL",
                             "collisions / episode", "episodes"], curve_rows)
    else:
        curve_table = fill(cmd.train())
    return join(
        "## Learning curves", fig or produce(cmd.train()), _caption(doc) if fig else None,
        f"From `{TRAIN}`:", train_table, f"Periodic held-out evaluation (`{CURVE}`):",
        curve_table)


def _caption(doc: Doc) -> str:
    """What the learning-curve figure shows; a line it cannot draw is named with the reason."""
    monitor = doc.data.get("monitor") or {}
    episodes = [e for rows in monitor.values() for e in rows]
    grey = any(e.get("success") is not None for e in episodes)
    parts = [f"grey: rolling success of training episodes (`{MONITOR_PATTERN}`)"] if grey else []
    if doc.value(CURVE):
        parts.append(f"blue: the periodic held-out evaluation (`{CURVE}`)")
    caption = "; ".join(parts) + "." if parts else ""
    caption = caption[:1].upper() + caption[1:]
    if grey and doc.value(CONFIG, "method") == "distill":
        # DAgger's early iterations let the teacher drive, which flatters the grey line.
        caption += (" Early training episodes are driven partly by the teacher (DAgger's "
                    "mixing), so their success starts high and falls as the student takes "
                    "over; the held-out line is the student alone.")
    if not grey:
        why = ("are missing" if not monitor else "hold no finished episode" if not episodes
               else "have no success column")
        caption += f" No training line: the training monitors (`{MONITOR_PATTERN}`) {why}."
    return caption.strip()
