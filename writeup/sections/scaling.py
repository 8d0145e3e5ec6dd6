"""Scaling out: what Ray costs on this machine and how long a full sweep takes here and on a
cluster, from bench_sweep.json (`embodied bench sweep`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from writeup.commands import Commands, fill
from writeup.doc import NA, Doc, format_number, is_number
from writeup.sections.common import B_SWEEP, join, machine, table

HEAD = "## Scaling out"
PROJECTED_SEEDS, PROJECTED_CONFIGS = 5, 4
"""The sweep projected where bench_sweep.json holds only the measured inputs: the size the
bench projects (5 seeds x 4 configurations)."""
CLUSTER_CORES = (16, 64, 256)
"""Cluster sizes projected in that case, as the bench does."""

FORMULA = ("wall-clock = Ray start + waves × one trial's wall-clock + ⌈trials / cores⌉ × one "
           "wave of test scoring, with waves = ⌈trials / ⌊cores / CPUs per trial⌋⌉")


def scaling_out(doc: Doc, cmd: Commands) -> str:
    """Sweep vs one-after-another wall-clock and their ratio, per-trial cost, projections."""
    if not doc.has(B_SWEEP):
        return join(HEAD, "How much Ray Tune adds to a trial, and what a 5-seed × "
                    "4-configuration sweep costs here and on a cluster, is measured by running "
                    "the same trials one after another and as a local sweep. "
                    + fill(cmd.bench_cmd("sweep")))
    if not isinstance(doc.value(B_SWEEP, "sweep"), Mapping) or not isinstance(
            doc.value(B_SWEEP, "sequential"), Mapping):
        return join(HEAD, f"`{B_SWEEP}` holds no timings in the shape this page reads. "
                    + fill(cmd.bench_cmd("sweep")))
    ray = doc.value(B_SWEEP, "machine", "ray")
    versions = None if ray is None else f"_Ray {doc.text(B_SWEEP, 'machine', 'ray')}._"
    return join(HEAD, _overhead(doc), _projection(doc), machine(doc, B_SWEEP), versions)


def _overhead(doc: Doc) -> str:
    b = B_SWEEP
    grid = ", ".join(f"`{g}`" for g in doc.value(b, "grid") or [] if isinstance(g, str))
    intro = (f"The same {doc.num(b, 'trials', kind='int')} trials (`{doc.text(b, 'config')}`, "
             f"{doc.num(b, 'timesteps_per_trial', kind='int')} steps each, "
             f"{doc.num(b, 'cpus_per_trial', kind='int')} CPUs per trial"
             + (f", grid {grid}" if grid else "") + ") ran one after another through "
             "`train()`, as `embodied train` runs them, and as a local `embodied sweep` (Ray "
             "Tune in-process). With as many cores as one trial asks for, both run one trial "
             "at a time, so the ratio of their wall-clocks is Ray's overhead: its start, a "
             "fresh worker process per trial, the reports.")
    per_trial = ", ".join(doc.num(b, "sequential", "per_trial_s", i, kind="s")
                          for i in range(len(doc.value(b, "sequential", "per_trial_s") or [])))
    rows = [["one after another (`train()`)", doc.num(b, "sequential", "wall_clock_s", kind="s"),
             doc.num(b, "sequential", "mean_trial_s", kind="s"), per_trial or NA],
            ["`embodied sweep` (Ray Tune, local)", doc.num(b, "sweep", "wall_clock_s", kind="s"),
             doc.num(b, "sweep", "per_trial_s", kind="s"),
             f"{doc.num(b, 'sweep', 'concurrent_trials', kind='int')} at a time"]]
    ratio = doc.value(b, "ratio")
    target = doc.value(b, "target_ratio")
    verdict = ""
    if is_number(ratio) and is_number(target):
        met = "met" if ratio <= target else "missed"
        verdict = f" (target ≤ {doc.num(b, 'target_ratio', kind='ratio')}: {met})"
    text = (f"Ratio sweep / one after another: {doc.num(b, 'ratio', kind='ratio')}{verdict}; "
            f"{doc.num(b, 'overhead_per_trial_s', kind='s')} s per trial. The sweep's "
            f"wall-clock is Ray's start ({doc.num(b, 'sweep', 'ray_start_s', kind='s')} s) plus "
            f"the trials ({doc.num(b, 'sweep', 'fit_s', kind='s')} s); the test scoring after "
            f"them ({doc.num(b, 'sweep', 'score_s', kind='s')} s) is left out of the ratio, as "
            "the one-after-another runs have none.")
    if is_number(ratio) and ratio < 1:
        text += (" A ratio below 1 does not make Ray faster than a plain loop: the two phases "
                 "ran at different times on a shared machine, and the per-trial times above "
                 "show how much one trial varies from run to run.")
    loads = doc.value(b, "load_avg_1m")
    if isinstance(loads, Mapping) and loads:
        text += (" 1-minute load average " + ", ".join(
            f"{key.replace('_', ' ')} {doc.num(b, 'load_avg_1m', key, kind='load')}"
            for key in loads) + ".")
    return join(intro, table(["path", "wall-clock (s)", "per trial (s)", "each trial (s)"], rows),
                text)


def _projection(doc: Doc) -> str:
    b, p = B_SWEEP, ("projection",)
    inputs = (f"Ray start {doc.num(b, 'sweep', 'ray_start_s', kind='s')} s, one trial "
              f"{doc.num(b, 'sweep', 'per_trial_s', kind='s')} s and test scoring "
              f"{doc.num(b, 'sweep', 'score_s', kind='s')} s for "
              f"{doc.num(b, 'trials', kind='int')} trials on "
              f"{doc.num(b, 'machine', 'cores', kind='int')} cores, measured above")
    if isinstance(doc.value(b, *p, "here"), Mapping):
        rows = [_row(doc, "here", (*p, "here"))]
        rows += [_row(doc, "cluster", (*p, "clusters", i))
                 for i, _ in doc.records(b, *p, "clusters")]
        assumes = doc.value(b, *p, "assumes")
        return join(
            f"Projected wall-clock of a {doc.num(b, *p, 'seeds', kind='int')}-seed × "
            f"{doc.num(b, *p, 'configs', kind='int')}-configuration sweep "
            f"({doc.num(b, *p, 'trials', kind='int')} trials), as `{b}` states it: "
            f"{FORMULA}; from {inputs}.",
            table(["where", "cores", "trials at once", "waves", "wall-clock (s)"], rows),
            f"Assumes {doc.text(b, *p, 'assumes')}." if isinstance(assumes, str) else None)
    computed = _compute(doc)
    if computed is None:
        return (f"`{b}` holds neither a projection nor the measured inputs one needs; "
                "rerun `embodied bench sweep`.")
    return join(
        f"`{b}` holds no projection, so it is computed here from the measured inputs ({inputs}) "
        f"for a {PROJECTED_SEEDS}-seed × {PROJECTED_CONFIGS}-configuration sweep: {FORMULA}. "
        "One scoring wave is the measured scoring time divided by the waves it took "
        "(⌈measured trials / cores⌉).",
        table(["where", "cores", "trials at once", "waves", "wall-clock (s)"], computed),
        "Assumes cluster cores as fast as this machine's and one trial's cost as measured here.")


def _row(doc: Doc, where: str, at: tuple[str | int, ...]) -> list[str]:
    return [where, doc.num(B_SWEEP, *at, "cores", kind="int"),
            doc.num(B_SWEEP, *at, "concurrent_trials", kind="int"),
            doc.num(B_SWEEP, *at, "waves", kind="int"),
            doc.num(B_SWEEP, *at, "wall_clock_s", kind="s")]


def project(trials: int, cores: int, cpus: int, trial_s: float, score_wave_s: float,
            start_s: float) -> dict[str, Any]:
    """`FORMULA` for `trials` equal trials on `cores` cores: {cores, concurrent_trials, waves,
    wall_clock_s}."""
    concurrent = max(1, cores // cpus)
    waves = math.ceil(trials / concurrent)
    wall = start_s + waves * trial_s + math.ceil(trials / max(1, cores)) * score_wave_s
    return {"cores": cores, "concurrent_trials": concurrent, "waves": waves,
            "wall_clock_s": wall}


def _compute(doc: Doc) -> list[list[str]] | None:
    """The projection table from bench_sweep.json's measured inputs (None where one lacks)."""
    b = B_SWEEP
    values = {name: doc.value(b, *path) for name, path in (
        ("trials", ("trials",)), ("cores", ("machine", "cores")),
        ("cpus", ("cpus_per_trial",)), ("trial_s", ("sweep", "per_trial_s")),
        ("score_s", ("sweep", "score_s")), ("start_s", ("sweep", "ray_start_s")))}
    if not all(is_number(v) and v >= 0 for v in values.values()) or not (
            values["trials"] >= 1 and values["cores"] >= 1 and values["cpus"] >= 1):
        return None
    trials, cores, cpus = (int(values[k]) for k in ("trials", "cores", "cpus"))
    score_wave_s = values["score_s"] / math.ceil(trials / cores)
    rows = []
    for where, n in [("here", cores), *(("cluster", c) for c in CLUSTER_CORES)]:
        r = project(PROJECTED_SEEDS * PROJECTED_CONFIGS, n, cpus, values["trial_s"],
                    score_wave_s, values["start_s"])
        rows.append([where, format_number(r["cores"], "int"),
                     format_number(r["concurrent_trials"], "int"),
                     format_number(r["waves"], "int"), format_number(r["wall_clock_s"], "s")])
    return rows
