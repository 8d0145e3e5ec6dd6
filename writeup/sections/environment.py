"""The environment and its randomization: task parameters, sensors, reward terms, ranges."""

from __future__ import annotations

from writeup.commands import Commands, fill
from writeup.doc import Doc
from writeup.sections.common import CONFIG, RUN, join, table

TASK_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("arena half-size (m)", ("arena_half_size_m",)),
    ("robot radius (m)", ("robot_radius_m",)),
    ("goal radius (m)", ("goal_radius_m",)),
    ("minimum start-goal distance (m)", ("min_goal_distance_m",)),
    ("control rate (Hz)", ("control_hz",)),
    ("physics rate (Hz)", ("physics_hz",)),
    ("episode limit (control steps)", ("max_steps",)),
    ("top speed (m/s)", ("max_linear_mps",)),
    ("top turn rate (rad/s)", ("max_angular_rps",)),
    ("planner grid cell (m)", ("grid_resolution_m",)),
    ("camera width (px)", ("observation", "width")),
    ("camera height (px)", ("observation", "height")),
    ("randomization strength", ("strength",)),
)
SENSORS = ("camera", "depth", "segmentation", "lidar", "proprio", "privileged")


def environment(doc: Doc, cmd: Commands) -> str:
    if not doc.has(CONFIG) or doc.value(CONFIG, "env") is None:
        return join("## The environment and its randomization", fill(cmd.train()))
    task = table(["parameter", "value"], [
        [label, doc.num(CONFIG, "env", *path, kind="g")] for label, path in TASK_FIELDS
        if doc.value(CONFIG, "env", *path) is not None])
    sensors = [s for s in SENSORS if doc.value(CONFIG, "env", "observation", s) is True]
    reward = table(["reward term", "weight"], [
        [name, doc.num(CONFIG, "env", "reward", name, kind="g")]
        for name in doc.keys(CONFIG, "env", "reward")])
    ranges = doc.keys(CONFIG, "env", "randomization")
    # config.yaml stores the ranges without their factor group; run.json records the group of
    # each field as training saw it (a run too old to record one prints n/a).
    rand = table(["field", "low", "high", "group"], [
        [f"`{name}`", doc.num(CONFIG, "env", "randomization", name, 0, kind="g"),
         doc.num(CONFIG, "env", "randomization", name, 1, kind="g"),
         doc.text(RUN, "randomization_groups", name)] for name in ranges])
    return join(
        "## The environment and its randomization",
        "A walled square arena with box and cylinder obstacles and a red-magenta goal beacon. "
        "The robot drives forward, along left or right arcs, or turns in place (discrete "
        "actions) and observes its camera only; reward is a sum of named terms. Values from "
        "the run's "
        f"`{CONFIG}`:",
        task, f"Sensors on: {', '.join(sensors) or 'none recorded'}.", reward,
        "Every randomization range, drawn per episode in `reset` (values at strength 1; a "
        "strength s moves each value from its strength-0 anchor towards the drawn one). The "
        "held-out split draws obstacle, wall and floor colours from hue bands and texture "
        "families that training never uses, and layouts from a disjoint set of layout seeds.",
        rand)
