"""Across seeds: a sweep folder's test scores per configuration over training seeds (sweep.json
of `embodied sweep`), with the intervals and the probability of improvement it computed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import rundir
from writeup.commands import Commands
from writeup.doc import NA, Doc, is_number
from writeup.sections.common import SWEEP, image, join, table

HEAD = "## Across seeds"
METRICS = rundir.SWEEP_METRICS
"""The test metrics sweep.json aggregates per configuration, with their labels (a sweep made
before the collision metrics were scored has only the first two: the others are left out)."""
LOWER = ", ".join(label for key, label in METRICS if key in rundir.SWEEP_LOWER_IS_BETTER)

METHOD = (
    "Statistics follow the protocol of Agarwal et al. 2021 (\"Deep Reinforcement Learning at "
    "the Edge of the Statistical Precipice\"), computed by `eval/aggregate.py` when the sweep "
    "ended: the interquartile mean is `scipy.stats.trim_mean(scores, 0.25)` (the mean of the "
    "middle half of the seeds, less swayed by one lucky or broken seed than the mean), and "
    "each 95 % interval is a percentile interval of `scipy.stats.bootstrap`, resampling the "
    "seeds within each stratum (here one stratum: the one test set), which is the stratified "
    "bootstrap. With fewer than two scored seeds an interval is undefined and shows as "
    f"`{NA}`. The probability of improvement P(X > Y) is the chance that a seed of X scores "
    "above a seed of Y (ties count one half; 0.5 is a draw). `rliable`, the protocol's "
    "reference implementation, was not used: its last release imports only with pandas < 3, "
    "and Ray Tune brings pandas 3 into this environment; scipy does the same arithmetic in a "
    "library the project already depends on.")


def across_seeds(doc: Doc, cmd: Commands) -> str:
    """Per configuration: mean, IQM, worst seed, 95 % intervals, seeds; P(X > Y); the plots."""
    if not doc.has(SWEEP):
        sweep, notes = cmd.seeds()
        return join(HEAD, "Every other figure on this page comes from one training seed, so a "
                    "recipe change smaller than the seed-to-seed spread cannot be told from "
                    f"luck. Run `{sweep}`, then `{notes}`, to produce this section: test "
                    "scores per configuration across seeds, with stratified-bootstrap "
                    "intervals and the probability that one configuration beats another.")
    configs = doc.records(SWEEP, "configs")
    if not configs:
        return join(HEAD, f"`{SWEEP}` holds no configurations in the shape this page reads; "
                    f"rebuild it with `embodied sweep --resume {cmd.sweep_dir or 'SWEEP_DIR'}`.")
    return join(HEAD, _intro(doc, cmd), _config_table(doc, configs), _settings(doc, configs),
                _improvement(doc, configs), _figures(doc), _trials(doc), METHOD)


def _intro(doc: Doc, cmd: Commands) -> str:
    seeds = ", ".join(doc.num(SWEEP, "seeds", i, kind="int")
                      for i in range(len(doc.value(SWEEP, "seeds") or [])))
    test, val = ("test",), ("validation",)
    folder = cmd.sweep_dir or "its folder"
    text = (f"The sweep in `{folder}` trained `{doc.text(SWEEP, 'base_config')}` with "
            f"training seeds {seeds or NA} per configuration ({doc.text(SWEEP, 'search')} "
            f"search, {doc.text(SWEEP, 'scheduler')} scheduler, up to "
            f"{doc.num(SWEEP, 'max_timesteps', kind='int')} steps per trial). Each trial's final "
            f"policy (its held-out validation, {doc.num(SWEEP, *val, 'episodes', kind='int')} "
            f"episodes every {doc.num(SWEEP, *val, 'every_timesteps', kind='int')} "
            f"steps, traces the curve) was scored on the same "
            f"{doc.num(SWEEP, *test, 'episodes', kind='int')} "
            f"`{doc.text(SWEEP, *test, 'split')}` test episodes (evaluation seed "
            f"{doc.num(SWEEP, *test, 'seed', kind='int')}), so the seeds differ in training "
            f"only. The sections above describe the run `{cmd.run}`.")
    cluster = doc.value(SWEEP, "cluster")
    if isinstance(cluster, Mapping):
        nodes = ", ".join(doc.text(SWEEP, "cluster", "nodes", i)
                          for i in range(len(cluster.get("nodes") or [])))
        text += (f" Ray ran in `{doc.text(SWEEP, 'cluster', 'mode')}` mode on "
                 f"{doc.num(SWEEP, 'cluster', 'cpus', kind='int')} CPUs (nodes: {nodes or NA}), "
                 f"{doc.num(SWEEP, 'resources_per_trial', 'cpu', kind='int')} CPU(s) per trial")
        timings = doc.value(SWEEP, "timings_s")
        if isinstance(timings, Mapping):
            text += (f"; Ray started in {doc.num(SWEEP, 'timings_s', 'ray_start_s', kind='s')} "
                     f"s, the trials took {doc.num(SWEEP, 'timings_s', 'fit_s', kind='s')} s and "
                     f"the test scoring {doc.num(SWEEP, 'timings_s', 'score_s', kind='s')} s")
        text += "."
    return text


def _config_table(doc: Doc, configs: list[tuple[int, Mapping[str, Any]]]) -> str:
    header = ["configuration", "seeds scored", "test metric", "mean [95 % CI]",
              "IQM [95 % CI]", "worst seed", "per seed"]
    rows = []
    for i, c in configs:
        at = ("configs", i)
        seeds = len(c.get("seeds") or [])
        scored = doc.num(SWEEP, *at, "success_rate", "n", kind="int")
        first = True
        for key, label in METRICS:
            if not isinstance(c.get(key), Mapping):
                continue
            name = f"`{doc.text(SWEEP, *at, 'config_id')}`" if first else ""
            count = (f"{scored} of {seeds}" if scored != NA else f"none of {seeds}") \
                if first else ""
            rows.append([name, count, label, doc.ci(SWEEP, *at, key, "mean", kind="rate"),
                         doc.ci(SWEEP, *at, key, "iqm", kind="rate"),
                         doc.num(SWEEP, *at, key, "worst", kind="rate"),
                         _per_seed(doc, i, c, key)])
            first = False
    return join("Test scores of each configuration across its training seeds (every number "
                f"from `{SWEEP}`; for {LOWER} the worst seed is the highest):",
                table(header, rows), _oracle(doc))


def _oracle(doc: Doc) -> str | None:
    """The oracle's scores on the same test episodes, when the sweep scored it."""
    if not isinstance(doc.value(SWEEP, "test", "oracle"), Mapping):
        return None
    at = ("test", "oracle")
    return (f"The oracle on the same test episodes: success "
            f"{doc.num(SWEEP, *at, 'success_rate')}, SPL {doc.num(SWEEP, *at, 'spl')}, "
            f"collision-free success {doc.num(SWEEP, *at, 'collision_free_success')}, "
            f"episodes with contact {doc.num(SWEEP, *at, 'contact_episode_rate')}.")


def _per_seed(doc: Doc, i: int, config: Mapping[str, Any], key: str = "success_rate") -> str:
    """`seed 0: 0.65, seed 1: 0.80` from the configuration's scored seeds and their scores."""
    agg = config.get(key)
    scores = agg.get("scores") if isinstance(agg, Mapping) else None
    seeds = config.get("scored_seeds")
    if not isinstance(scores, list) or not scores:
        return NA
    named = isinstance(seeds, list) and len(seeds) == len(scores)
    return ", ".join(
        (f"seed {doc.num(SWEEP, 'configs', i, 'scored_seeds', j, kind='int')}: " if named else "")
        + doc.num(SWEEP, "configs", i, key, "scores", j) for j in range(len(scores)))


def _setting(value: Any) -> str:
    """A swept value as the configuration reads it (floats in `:g`, so 5e-4 stays short)."""
    return f"{value:g}" if is_number(value) and isinstance(value, float) else str(value)


def _settings(doc: Doc, configs: list[tuple[int, Mapping[str, Any]]]) -> str:
    # Swept keys hold dots (`distill.learning_rate`), which a recorded path cannot spell, so
    # the settings are shown as the configuration's code rather than as measured figures.
    lines = []
    for i, c in configs:
        params = c.get("params") if isinstance(c.get("params"), Mapping) else {}
        text = ", ".join(f"`{k}={_setting(v)}`" for k, v in params.items()) or "the base config"
        lines.append(f"- `{doc.text(SWEEP, 'configs', i, 'config_id')}`: {text}")
    overrides = [o for o in doc.value(SWEEP, "overrides") or [] if isinstance(o, str)]
    if overrides:
        lines.append("- every configuration: " + ", ".join(f"`{o}`" for o in overrides))
    return "Settings of each configuration:\n\n" + "\n".join(lines)


def _improvement(doc: Doc, configs: list[tuple[int, Mapping[str, Any]]]) -> str:
    ids = [str(c.get("config_id")) for _, c in configs]
    pairs = {(str(r.get("x")), str(r.get("y"))): k
             for k, r in doc.records(SWEEP, "probability_of_improvement", "pairs")}
    if len(ids) < 2:
        return "One configuration: there is no other to compare it with."
    if not pairs:
        return (f"`{SWEEP}` holds no probability of improvement (no configuration had a "
                "scored seed).")
    rows = []
    for x in ids:
        cells = [f"`{x}`"]
        for y in ids:
            k = pairs.get((x, y))
            if x == y or k is None:
                cells.append("–")
                continue
            at = ("probability_of_improvement", "pairs", k)
            p = doc.num(SWEEP, *at, "p")
            ci = doc.value(SWEEP, *at, "ci95")
            if isinstance(ci, list) and len(ci) == 2 and all(is_number(v) for v in ci):
                p += f" [{doc.num(SWEEP, *at, 'ci95', 0)}, {doc.num(SWEEP, *at, 'ci95', 1)}]"
            cells.append(p)
        rows.append(cells)
    metric = doc.text(SWEEP, "probability_of_improvement", "metric")
    return join(f"Probability that the row's configuration beats the column's on one seed's "
                f"test `{metric}` [95 % CI]; an interval that holds 0.5 is no evidence either "
                "way:", table(["P(row > column)", *[f"`{i}`" for i in ids]], rows))


def _figures(doc: Doc) -> str:
    curves = image(doc, "seeds_curves", "Learning curves of every seed and their mean")
    final = image(doc, "seeds_final", "Final test success of every seed per configuration")
    if not curves and not final:
        return ("The sweep folder holds no plots; `embodied sweep --resume` on it draws "
                "them again.")
    return join(curves and ("Held-out validation success during training: each seed thin, "
                            "the across-seed mean bold, one colour per configuration.\n\n"
                            + curves),
                final and ("Final test success of every seed (dots), the interquartile mean "
                           "(bar) with its 95 % interval, and the mean (x).\n\n" + final))


def _trials(doc: Doc) -> str:
    rows = []
    for k, _ in doc.records(SWEEP, "trials"):
        at = ("trials", k)
        rows.append([f"`{doc.text(SWEEP, *at, 'run_dir')}`",
                     doc.num(SWEEP, *at, "seed", kind="int"), doc.text(SWEEP, *at, "status"),
                     doc.num(SWEEP, *at, "timesteps", kind="int"),
                     doc.num(SWEEP, *at, "wall_clock_s", kind="s"),
                     doc.num(SWEEP, *at, "best_val_success"),
                     doc.ci(SWEEP, *at, "test", "success_rate", kind="rate"),
                     doc.num(SWEEP, *at, "test", "spl")])
    if not rows:
        return ""
    return join("Every trial (a full run directory inside the sweep folder; `embodied eval`, "
                "`video`, `export` and `writeup` work on each):",
                table(["trial", "seed", "status", "steps", "wall-clock (s)",
                       "best validation success", "test success [95 % CI]", "test SPL"], rows))
