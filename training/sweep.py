"""`embodied sweep`: seeds and hyper-parameters as Ray Tune trials, each an ordinary training run.

    embodied sweep --config tiny --seeds 3 --grid distill.learning_rate=5e-4,1e-3

Every trial calls the same `training.train.train()` into its own run directory
(`<out>/trials/<config>_s<seed>/`, the layout of `rundir`), so `eval`, `video`, `export` and
`writeup` work on any trial. Trials report held-out validation success and SPL after each
periodic evaluation (`ray.tune.report`), which lets ASHA (`--scheduler asha`) stop weak ones
early; `--search optuna` proposes configurations through Ray Tune's `OptunaSearch`, repeated
over the seeds by Tune's `Repeater`. At the end `training.sweep_report` scores every trial's
final policy on the same `heldout` test episodes and writes sweep.json, sweep.md and plots.

Where trials run is `training.cluster`'s business: Ray in this process on this machine's cores
by default, an existing cluster with `--address` / `RAY_ADDRESS` (then `--out` must be a path
every node sees). A trial asks for honest resources: one CPU per subprocess env (`n_envs` with
`vec_env=subproc`, else one), and its torch threads are capped at that share.

The sweep folder:

    sweep_plan.json     what was asked (config, grid, seeds, resources); `--resume` reads it
    sweep_trials.json   how each ended trial ended (done, stopped early, error)
    trials/<id>_s<n>/   one run directory per trial
    tune/               Ray Tune's experiment state (what `--resume` restores)
    sweep.json, sweep.md, sweep_curves.png, sweep_final.png    the report (sweep_report)
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rundir
from envs.config import ConfigError
from training.sweep_plan import (
    OUTCOMES_FILE,
    PLAN_FILE,
    TRIALS_DIR,
    TUNE_DIR,
    VAL_SPL,
    VAL_SUCCESS,
    SweepSpec,
    make_plan,
    spec_from_plan,
    total_timesteps,
    trial_config,
    trial_cpus,
    trial_dir,
    trial_identity,
    trial_name,
    trial_resources,
    yaml_value,
)

# ------------------------------------------------------------------------------ one trial


def run_trial(params: dict[str, Any], plan: dict[str, Any], out: str) -> None:
    """The Tune trainable: one `train()` into the trial's run directory, reporting every
    periodic held-out validation. A trial restarted by `--resume` continues its run from its
    last checkpoint; one that died before its first checkpoint starts over."""
    from ray import tune

    from training.train import train

    cid, settings, seed = trial_identity(params, plan)
    spec = plan["spec"]
    cpus = trial_cpus(trial_config(plan["base"], settings, seed), spec["cpus_per_trial"])
    cfg = trial_config(plan["base"], settings, seed, cpus)
    run_dir = trial_dir(Path(out), cid, seed)
    resume = (run_dir / rundir.LATEST_FILE).is_file()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)  # a previous attempt that saved nothing to continue from

    def metrics(row: dict[str, Any]) -> dict[str, Any]:
        return {"timesteps": int(row["timesteps"]), VAL_SUCCESS: row["success_rate"] or 0.0,
                VAL_SPL: row["spl"] or 0.0, "wall_clock_s": row["wall_clock_s"],
                "config_id": cid, "seed": seed}

    last: list[dict[str, Any]] = []

    def report(row: dict[str, Any]) -> None:
        # The evaluation at the last step is reported once train() has returned: a scheduler
        # that stops trials at that step would otherwise end it before it writes final/.
        if row["timesteps"] >= total_timesteps(cfg):
            last.append(row)
        else:
            tune.report(metrics(row))

    # run.json records the `embodied train` command that reproduces this trial
    argv = ["train", "--config", spec["config"], *spec["overrides"],
            *(f"{k}={yaml_value(v)}" for k, v in settings.items()), f"seed={seed}",
            f"torch_threads_collect={cfg.torch_threads_collect}",
            f"torch_threads_train={cfg.torch_threads_train}"]
    train(cfg, run_dir, argv=argv, resume=resume, quiet=True, on_eval=report)
    if last:
        tune.report(metrics(last[-1]))


# ------------------------------------------------------------------------------ progress


def _short(settings: dict[str, Any]) -> str:
    text = " ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else
                    f"{k.rsplit('.', 1)[-1]}={v}" for k, v in settings.items())
    return text or "base config"


def read_outcomes(out: Path) -> dict[str, dict[str, Any]]:
    """How the trials of the sweep in `out` that have ended so far ended, by trial name."""
    path = Path(out) / OUTCOMES_FILE
    return rundir.read_json(path) if path.is_file() else {}


@dataclass
class SweepProgress:
    """One console line per trial result and per ended trial, and the record of how each
    trial ended (`OUTCOMES_FILE`, rewritten atomically at every end, read again by --resume).

    A trial ends `done` (train() finished), `stopped early` (by the scheduler) or `error`.
    Trials cut short by Ctrl-C get no entry: Tune restarts them on --resume, which is also how
    an interrupted sweep is told apart from a finished one.
    """

    plan: dict[str, Any]
    out: Path
    echo: Any = print
    last: dict[str, dict[str, Any]] = field(default_factory=dict)

    def callback(self) -> Any:
        from ray import tune

        progress = self

        class _Callback(tune.Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                progress.result(trial, result)

            def on_trial_complete(self, iteration, trials, trial, **info):
                progress.done(trial, "done")

            def on_trial_error(self, iteration, trials, trial, **info):
                progress.done(trial, "error")

        return _Callback()

    def _label(self, trial) -> str:
        cid, settings, seed = trial_identity(trial.config, self.plan)
        return f"[{trial_name(cid, seed)}] {_short(settings)}"

    def result(self, trial, result: dict[str, Any]) -> None:
        self.last[trial.trial_id] = result
        self.echo(f"{self._label(trial)}: {result['timesteps']:,}/"
                  f"{self.plan['max_timesteps']:,} steps, validation success "
                  f"{result[VAL_SUCCESS]:.2f} SPL {result[VAL_SPL]:.2f}", flush=True)

    def done(self, trial, how: str) -> None:
        cid, settings, seed = trial_identity(trial.config, self.plan)
        steps = int(self.last.get(trial.trial_id, {}).get("timesteps", 0))
        summary = trial_dir(self.out, cid, seed) / rundir.TRAIN_SUMMARY_FILE
        if summary.is_file() and not steps:  # resumed after its last report: nothing new
            steps = int(rundir.read_json(summary).get("timesteps", 0))
        if how == "done" and not summary.is_file():
            how = "stopped early"  # by the scheduler: train() never wrote its summary
        error = None
        if how == "error":
            error = f"see {trial.error_file}" if trial.error_file else "the trial failed"
        # read-modify-write: after --resume this object is Tune's restored copy of the
        # first session's callback, so the file, not memory, holds every session's endings
        outcomes = read_outcomes(self.out)
        outcomes[trial_name(cid, seed)] = {
            "config_id": cid, "params": settings, "seed": seed, "status": how,
            "last_report_timesteps": steps, "error": error}
        rundir.write_json(self.out / OUTCOMES_FILE, outcomes)
        extra = f" ({error})" if error else ""
        self.echo(f"{self._label(trial)}: {how} at {steps:,} steps{extra}", flush=True)


# ------------------------------------------------------------------------------ the sweep


def _tuner(plan: dict[str, Any], out: Path, progress: SweepProgress, restore: bool):
    # Tune's newer console output prints its banner whatever `verbose` says; the classic
    # reporter honours verbose=0, leaving the console to SweepProgress.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    spec = plan["spec"]
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, plan=plan, out=str(out)),
        resources=functools.partial(trial_resources, plan=plan))
    run_config = tune.RunConfig(name=TUNE_DIR, storage_path=str(out), verbose=0,
                                callbacks=[progress.callback()],
                                failure_config=tune.FailureConfig(max_failures=0))
    if restore:
        return tune.Tuner.restore(str(out / TUNE_DIR), trainable, resume_unfinished=True,
                                  resume_errored=True)
    if spec["scheduler"] == "asha":
        scheduler = ASHAScheduler(time_attr="timesteps", max_t=plan["max_timesteps"],
                                  grace_period=min(plan["eval_every_timesteps"],
                                                   plan["max_timesteps"]),
                                  reduction_factor=2)
    else:
        scheduler = FIFOScheduler()
    seeds = plan["seeds"]
    if spec["search"] == "optuna":
        from ray.tune.search import Repeater
        from ray.tune.search.optuna import OptunaSearch

        grid = spec_from_plan(plan).grid
        param_space = {"params": {d.key: d.tune_domain() for d in grid}}
        search_alg = Repeater(OptunaSearch(seed=spec["search_seed"]), repeat=len(seeds))
        num_samples = spec["samples"] * len(seeds)
    else:
        param_space = {"variant": tune.grid_search(plan["configurations"]),
                       "seed": tune.grid_search(seeds)}
        search_alg, num_samples = None, 1

    def dirname(trial) -> str:
        cid, _, seed = trial_identity(trial.config, plan)
        return f"{trial_name(cid, seed)}_{trial.trial_id}"

    # reuse_actors: the next trial of the same size runs in the worker process of the last
    # one, as `train()` runs one after another in one process, instead of paying a new
    # process and its torch/pybullet imports per trial
    tune_config = tune.TuneConfig(metric=VAL_SUCCESS, mode="max", scheduler=scheduler,
                                  search_alg=search_alg, num_samples=num_samples,
                                  trial_dirname_creator=dirname, reuse_actors=True)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                      run_config=run_config)


def expected_trials(plan: dict[str, Any]) -> int:
    n = plan["spec"]["samples"] if plan["spec"]["search"] == "optuna" else \
        len(plan["configurations"])
    return n * len(plan["seeds"])


@dataclass
class SweepResult:
    out: Path
    interrupted: bool
    report: dict[str, Any] | None
    timings: dict[str, float]


def run_sweep(spec: SweepSpec | None, out: Path, address: str | None = None,
              resume: bool = False, argv: list[str] | None = None,
              echo: Any = print) -> SweepResult:
    """Run (or with `resume`, continue) a sweep into `out`, then score and report it.

    Everything the user can get wrong (grid keys and values, resources, the cluster address
    and its authentication) fails with one line before any trial starts. Ctrl-C ends the
    sweep with every finished trial kept; `resume=True` continues it.
    """
    from training import cluster, sweep_report

    out = Path(out).resolve()
    if resume:
        if not (out / PLAN_FILE).is_file() or not (out / TUNE_DIR).is_dir():
            raise ConfigError(f"{out} is not a sweep folder (no {PLAN_FILE} and {TUNE_DIR}/)")
        plan = rundir.read_json(out / PLAN_FILE)
    else:
        if spec is None:
            raise ConfigError("a new sweep needs its spec")
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"sweep folder {out} exists and is not empty; pass another --out "
                              f"or continue it with --resume {out}")
        plan = make_plan(spec)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    resolved = cluster.resolve_address(address)
    # A trial may step more env processes than this machine has cores (the default preset's
    # 4 envs on 2 cores, as `embodied train` runs it): a local Ray then counts as many CPUs
    # as the largest trial asks for, so such trials run one at a time rather than never.
    local_cpus = None if resolved is not None else max(os.cpu_count() or 1,
                                                       plan["max_cpus_per_trial"])
    info = cluster.connect(resolved, num_cpus=local_cpus)
    try:
        timings["ray_start_s"] = time.perf_counter() - start
        if plan["max_cpus_per_trial"] > info.cpus or plan["spec"]["gpus_per_trial"] > info.gpus:
            raise ConfigError(
                f"a trial asks for {plan['max_cpus_per_trial']} CPUs and "
                f"{plan['spec']['gpus_per_trial']:g} GPUs but the Ray cluster has {info.cpus:g} "
                f"and {info.gpus:g}: lower n_envs or --cpus-per-trial / --gpus-per-trial")
        if not resume:
            rundir.write_json(out / PLAN_FILE, {**plan, "command": _command(argv)})
        progress = SweepProgress(plan, out, echo)
        echo(f"Sweep of {expected_trials(plan)} trials on {info.mode} Ray "
             f"({info.cpus:g} CPUs, {len(info.nodes)} node(s)); folder {out}", flush=True)
        fit_start = time.perf_counter()
        tune_logger = logging.getLogger("ray.tune")
        level = tune_logger.level
        # Tune's warnings on Ctrl-C name its Python API; the lines below say what to run
        tune_logger.setLevel(logging.ERROR)
        try:
            _tuner(plan, out, progress, resume).fit()
        finally:
            tune_logger.setLevel(level)
        # a finished sweep resumed (to score it again) keeps its trials' time, not ~0 s
        timings["fit_s"] = _earlier_fit_s(out) + time.perf_counter() - fit_start
        outcomes = read_outcomes(out)
        ended = len(outcomes)
        if ended < expected_trials(plan):
            echo(f"\nSweep interrupted: {ended} of {expected_trials(plan)} trials ended; "
                 f"their run directories are kept in {out / TRIALS_DIR}.", flush=True)
            echo(f"Continue with:  embodied sweep --resume {out}", flush=True)
            return SweepResult(out, True, None, timings)
        trials = list(outcomes.values())
        score_start = time.perf_counter()
        report = sweep_report.build(out, plan, trials, info.as_dict(), echo=echo)
        timings["score_s"] = time.perf_counter() - score_start
        report["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        rundir.write_json(out / sweep_report.SWEEP_FILE, report)
        return SweepResult(out, False, report, timings)
    finally:
        cluster.disconnect()


def _earlier_fit_s(out: Path) -> float:
    """Seconds the trials took in the sessions that already reported this sweep (0 for a new
    sweep, or one interrupted before its report)."""
    path = out / rundir.SWEEP_FILE
    if not path.is_file():
        return 0.0
    try:
        return float(rundir.read_json(path).get("timings_s", {}).get("fit_s") or 0.0)
    except (rundir.RunFileError, TypeError, ValueError, AttributeError):
        return 0.0


def _command(argv: list[str] | None) -> str | None:
    return " ".join(["embodied", *argv]) if argv else None
