"""The end of a sweep: every trial's policy (`rundir.POLICY_DIRS`) scored on the same held-out
test episodes, statistics across seeds (`eval.aggregate`), and the sweep folder's report files.

Scoring runs as Ray tasks (one CPU each) on the cluster the sweep used, so it spreads over
the nodes like the trials did; a trial already scored with the same checkpoint, episodes and
seed (a resumed sweep) is not scored again. The test episodes are `evaluate_all`'s with
`eval.rollout.TEST_SEED`, distinct from the validation episodes that trace each trial's curve
(`VALIDATION_SEED`).

Files (each atomic, through `rundir`): `sweep.json` (written by the caller with the timings),
`sweep.md`, `sweep_curves.png`, `sweep_final.png`; per trial `eval_heldout/summary.json` and
`episodes_policy.jsonl`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import rundir
from eval import aggregate
from eval.rollout import TEST_SEED
from policies.actions import CONTINUOUS_DECISION, DECISION
from training.sweep_plan import trial_dir

SWEEP_FILE = rundir.SWEEP_FILE
TEST_SPLIT = "heldout"
TEST_KEYS = ("success_rate", "spl", "soft_spl", "success_rate_ci95", "spl_ci95", "episodes",
             "errors", "collisions_per_episode", "collision_free_success",
             "contact_episode_rate", "failure_modes", "teacher")
METRICS = rundir.SWEEP_METRICS
LOWER_IS_BETTER = rundir.SWEEP_LOWER_IS_BETTER
ORACLE_KEYS = ("success_rate", "spl", "collision_free_success", "contact_episode_rate")
"""The oracle's scores on the same test episodes, the reference each configuration is read
against (SPL as a fraction of the oracle's, contact beside the planner's)."""


def _checkpoint(run_dir: Path) -> Path | None:
    """The trial's final policy, else its best validated one (None if it saved neither)."""
    for name in rundir.POLICY_DIRS:
        path = run_dir / name / rundir.POLICY_FILE
        if path.is_file():
            return path
    return None


def score_run(run_dir: str, episodes: int, seed: int = TEST_SEED) -> dict[str, Any] | None:
    """Test scores of one trial's checkpoint (reusing an identical earlier evaluation, one
    that decided actions by today's rule too), with how closely it followed its distillation
    teacher (`eval.agreement`)."""
    from eval.report import evaluate_all
    from training.experts import distillation_teacher

    run = Path(run_dir)
    target = _checkpoint(run)
    if target is None:
        return None
    out = run / rundir.eval_dir_name(TEST_SPLIT)
    teacher = distillation_teacher(run)
    summary = None
    if (out / rundir.SUMMARY_FILE).is_file():
        previous = rundir.read_json(out / rundir.SUMMARY_FILE)
        if (previous.get("episodes"), previous.get("seed"), previous.get("checkpoint")) == \
                (episodes, seed, str(target)) and "policy" in previous and (
                    teacher is None or "teacher" in previous["policy"]) and \
                previous.get("decision") in (DECISION, CONTINUOUS_DECISION):
            summary = previous
    if summary is None:
        summary = evaluate_all(target, split=TEST_SPLIT, episodes=episodes, seed=seed,
                               out_dir=out, policies=("policy",), progress=False,
                               teacher=teacher)
    scores = {k: summary["policy"].get(k) for k in TEST_KEYS}
    return {**scores, "checkpoint": str(target.relative_to(run)), "seed": seed}


def score_oracle(run_dir: str, episodes: int, seed: int = TEST_SEED) -> dict[str, Any] | None:
    """The oracle's scores on the test episodes of `run_dir`'s env (None without a checkpoint)."""
    from eval.report import evaluate_all

    target = _checkpoint(Path(run_dir))
    if target is None:
        return None
    summary = evaluate_all(target, split=TEST_SPLIT, episodes=episodes, seed=seed,
                           policies=("oracle",), progress=False)
    return {k: summary["oracle"].get(k) for k in ORACLE_KEYS}


def score_trials(out: Path, trials: list[dict[str, Any]], episodes: int
                 ) -> tuple[list[dict[str, Any] | None], dict[str, Any] | None]:
    """`score_run` of every trial, and `score_oracle` once on the first trial's env, as
    parallel Ray tasks of one CPU each."""
    import ray

    task = ray.remote(num_cpus=1)(score_run)
    dirs = [str(trial_dir(out, t["config_id"], t["seed"])) for t in trials]
    refs = [task.remote(d, episodes) for d in dirs]
    oracle = ray.remote(num_cpus=1)(score_oracle).remote(dirs[0], episodes) if dirs else None
    return ray.get(refs), (ray.get(oracle) if oracle is not None else None)


def _curve(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / rundir.EVAL_DURING_TRAINING_FILE
    rows = rundir.read_jsonl(path) if path.is_file() else []
    keep = ("timesteps", "wall_clock_s", "success_rate", "spl")
    return [{k: row.get(k) for k in keep} for row in rows]


def _trial_row(out: Path, trial: dict[str, Any], test: dict[str, Any] | None
               ) -> dict[str, Any]:
    run = trial_dir(out, trial["config_id"], trial["seed"])
    summary_path = run / rundir.TRAIN_SUMMARY_FILE
    summary = rundir.read_json(summary_path) if summary_path.is_file() else {}
    curve = _curve(run)
    best = max(curve, key=lambda r: (r["success_rate"] or 0.0, r["spl"] or 0.0), default=None)
    return {**trial, "run_dir": str(run.relative_to(out)),
            "timesteps": summary.get("timesteps", trial["last_report_timesteps"]),
            "wall_clock_s": summary.get("wall_clock_s", curve[-1]["wall_clock_s"] if curve
                                        else None),
            "steps_per_s": summary.get("steps_per_s"),
            "best_val_success": best["success_rate"] if best else None,
            "best_val_spl": best["spl"] if best else None,
            "curve": curve, "test": test}


def aggregate_configs(trials: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """Per configuration (in `order`): its settings, seeds and `summarize_scores` of each test
    metric over the seeds that were scored (None when none was)."""
    rows = []
    for cid in order:
        mine = sorted((t for t in trials if t["config_id"] == cid), key=lambda t: t["seed"])
        scored = [t for t in mine if t["test"] and t["test"].get("success_rate") is not None]
        row: dict[str, Any] = {"config_id": cid, "params": mine[0]["params"],
                               "seeds": [t["seed"] for t in mine],
                               "scored_seeds": [t["seed"] for t in scored]}
        for key, _ in METRICS:
            values = [t["test"][key] for t in scored if t["test"].get(key) is not None]
            row[key] = aggregate.summarize_scores(
                values, higher_is_better=key not in LOWER_IS_BETTER) if values else None
        rows.append(row)
    return rows


def format_trials(trials: list[dict[str, Any]]) -> str:
    """Markdown table: one row per trial."""
    lines = ["| trial | seed | status | steps | best validation success | test success "
             "[95 % CI] | test SPL | test agreement with the teacher |",
             "|---|---|---|---|---|---|---|---|"]
    for t in trials:
        test = t["test"] or {}
        ci = test.get("success_rate_ci95") or [None, None]
        success = "n/a" if test.get("success_rate") is None else (
            f"{test['success_rate']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] is not None
                                             else ""))
        spl = "n/a" if test.get("spl") is None else f"{test['spl']:.2f}"
        val = "n/a" if t["best_val_success"] is None else f"{t['best_val_success']:.2f}"
        agreement = (test.get("teacher") or {}).get("agreement")
        agree = "n/a" if agreement is None else f"{agreement:.2f}"
        lines.append(f"| `{t['run_dir']}` | {t['seed']} | {t['status']} | {t['timesteps']:,} | "
                     f"{val} | {success} | {spl} | {agree} |")
    return "\n".join(lines) + "\n"


def format_report(report: dict[str, Any]) -> str:
    """sweep.md: the aggregate table, the probability of improvement, then every trial."""
    test = report["test"]
    head = (f"# Sweep of `{report['base_config']}`: {len(report['configs'])} configuration(s) "
            f"x {len(report['seeds'])} seed(s)\n\nTest: {test['episodes']} `{test['split']}` "
            f"episodes (evaluation seed {test['seed']}), the same for every trial, scoring each "
            "trial's final policy.\n\n")
    body = aggregate.format_markdown(report["configs"],
                                     report["probability_of_improvement"]["pairs"],
                                     metrics=METRICS)
    return head + body + "\n## Trials\n\n" + format_trials(report["trials"])


def build(out: Path, plan: dict[str, Any], outcomes: list[dict[str, Any]],
          cluster: dict[str, Any], echo: Callable[..., Any] = print) -> dict[str, Any]:
    """Score every trial, aggregate, write sweep.md and the plots; return sweep.json's data."""
    spec = plan["spec"]
    episodes = int(spec["test_episodes"])
    echo(f"\nScoring {len(outcomes)} trials on {episodes} {TEST_SPLIT} test episodes ...",
         flush=True)
    tests, oracle = score_trials(out, outcomes, episodes)
    trials = sorted((_trial_row(out, t, s) for t, s in zip(outcomes, tests)),
                    key=lambda t: (t["config_id"], t["seed"]))
    order = [c["config_id"] for c in plan["configurations"]] or \
        list(dict.fromkeys(t["config_id"] for t in trials))
    order = [cid for cid in order if any(t["config_id"] == cid for t in trials)]
    configs = aggregate_configs(trials, order)
    scores = {c["config_id"]: c["success_rate"]["scores"] for c in configs if c["success_rate"]}
    report = {
        "kind": "sweep", "created": rundir.utc_now(),
        "command": plan.get("command"),
        "machine": rundir.machine_info(("ray", "torch", "scipy", "optuna")),
        "cluster": cluster, "base_config": spec["config"], "overrides": spec["overrides"],
        "search": spec["search"], "samples": spec["samples"] or None,
        "scheduler": spec["scheduler"], "seeds": plan["seeds"],
        "grid": spec["grid"],
        "resources_per_trial": {"cpu": plan["max_cpus_per_trial"],
                                "gpu": spec["gpus_per_trial"]},
        "validation": {"split": plan["base"]["eval"]["split"],
                       "episodes": plan["base"]["eval"]["episodes"],
                       "every_timesteps": plan["eval_every_timesteps"]},
        "test": {"split": TEST_SPLIT, "seed": TEST_SEED, "episodes": episodes,
                 "oracle": oracle},
        "max_timesteps": plan["max_timesteps"],
        "trials": trials, "configs": configs,
        "probability_of_improvement": {"metric": "success_rate",
                                       "pairs": aggregate.compare(scores)},
        "files": {"table": rundir.SWEEP_TABLE_FILE, "curves": rundir.SWEEP_CURVES_FIGURE,
                  "final": rundir.SWEEP_FINAL_FIGURE},
    }
    rundir.write_text(out / rundir.SWEEP_TABLE_FILE, format_report(report))
    curves = {cid: {t["seed"]: [(r["timesteps"], r["success_rate"] or 0.0) for r in t["curve"]]
                    for t in trials if t["config_id"] == cid} for cid in order}
    aggregate.save_figure(aggregate.plot_learning_curves(curves),
                          out / rundir.SWEEP_CURVES_FIGURE)
    aggregate.save_figure(aggregate.plot_final_distribution(configs),
                          out / rundir.SWEEP_FINAL_FIGURE)
    return report
