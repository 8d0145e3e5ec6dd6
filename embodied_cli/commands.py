"""The subcommands: each a thin shell over a typed function of its stage, imported lazily so
`embodied --help` starts without torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import rundir


class UserError(Exception):
    """A mistake in the command line or its inputs: reported as one line, exit code 2."""


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from training.config import load_config, load_run_config
    from training.run import default_run_dir
    from training.train import train

    if args.resume_from and not args.resume:
        raise UserError("--from picks the checkpoint a resumed run starts from; use it with "
                        "--resume RUN_DIR")
    if args.resume:
        if args.overrides:
            raise UserError("--resume continues a run with its saved config; drop the overrides")
        if args.run_dir:
            raise UserError("--resume names the run directory; drop --run-dir")
        run_dir = Path(args.resume)
        cfg = load_run_config(run_dir)
    else:
        cfg = load_config(args.config, args.overrides)
    if args.device:
        cfg = dataclasses.replace(cfg, device=args.device)
    if not args.resume:
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg, Path(
            args.config).stem)
    # train() claims the run directory (one process per run; a new run needs it empty)
    result = train(cfg, run_dir, argv=args.argv, resume=bool(args.resume), quiet=args.quiet,
                   resume_from=args.resume_from)
    s = result.summary
    if result.interrupted:
        print(f"\nInterrupted at {result.timesteps:,} steps; checkpoint saved in {run_dir}.")
        print(f"Resume with:  embodied train --resume {run_dir}")
        if cfg.method == "distill":
            print("(a resumed distillation keeps the student, optimizer and schedule; the "
                  "aggregated frames are collected afresh)")
        return 0
    print(f"\nTrained {result.timesteps:,} steps in {s['wall_clock_s'] / 60:.1f} min "
          f"({s['steps_per_s']:.0f} steps/s).")
    if s["best_heldout_success"] is not None:
        print(f"Best held-out success {s['best_heldout_success']:.2f}, "
              f"SPL {s['best_heldout_spl']:.2f}")
    print(f"Run directory: {run_dir}")
    print(f"Evaluate with: embodied eval {run_dir}")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _cmd_eval(args: argparse.Namespace) -> int:
    from eval import metrics
    from eval.report import evaluate_all, gate
    from eval.robustness import parse_sweep, sweep
    from training.experts import distillation_teacher

    # every value is checked before the evaluation starts, so bad input writes nothing
    sweeps = [parse_sweep(spec) for spec in args.sweep or []]
    out = Path(args.out) if args.out else rundir.default_output(args.target,
                                                       rundir.eval_dir_name(args.split))
    summary = evaluate_all(args.target, split=args.split, episodes=args.episodes,
                           seed=args.seed, out_dir=out, progress=not args.quiet,
                           teacher=distillation_teacher(args.target))
    rows = {name: summary[name] for name in summary["policies"]}
    print(f"\n{args.split} split, {args.episodes} episodes, seed {args.seed} "
          "(95 % bootstrap CIs):")
    print(metrics.format_table(rows))
    ratio = summary.get("spl_vs_oracle")
    if ratio is not None:
        print(f"Policy SPL is {ratio:.0%} of the oracle's.")
    _print_agreement(summary)
    print(f"Results: {out / rundir.SUMMARY_FILE}, {out}/{rundir.episodes_file('*')}")
    for name, row in rows.items():
        if row["errors"]:
            print(f"{row['errors']} of {args.episodes} {name} episodes crashed; their errors "
                  f"are in {out / rundir.episodes_file(name)}", file=sys.stderr)
    if rows["policy"]["episodes"] == 0:
        records = rundir.read_jsonl(out / rundir.episodes_file("policy"))
        first = next((r["error"] for r in records if "error" in r), "unknown error")
        print(f"embodied eval: error: every one of the {args.episodes} policy episodes "
              f"crashed, so there is no result (first error: {first})", file=sys.stderr)
        return 1
    for factor, strengths in sweeps:
        data = sweep(args.target, factor, strengths, split=args.split,
                     episodes=args.sweep_episodes, seed=args.seed, out_dir=out,
                     progress=not args.quiet)
        print(f"\nRobustness sweep ({factor}):")
        for row in data["rows"]:
            print(f"  strength {row['strength']:<4} {row['policy']:<7} "
                  f"success {_fmt(row['success_rate'])}  SPL {_fmt(row['spl'])}")
        print(f"  plot: {out / rundir.sweep_file(factor, '.png')}")
    if args.min_success is not None and not gate(summary, args.min_success):
        print(f"FAIL: success rate {_fmt(rows['policy']['success_rate'])} is below "
              f"--min-success {args.min_success:g}", file=sys.stderr)
        return 1
    return 0


def _print_agreement(summary: dict) -> None:
    """How closely the policy followed its distillation teacher (`eval.agreement`)."""
    from envs import ACTION_NAMES
    from eval.metrics import format_confusion

    stats, teacher = summary["policy"].get("teacher"), summary.get("teacher")
    if not stats or not teacher:
        return
    who = (f"the camera-aware planner, clearance {teacher['clearance_m']:g} m, search "
           f"{teacher['search']}; from {teacher['source']}")
    if "confusion" in stats:
        print(f"\nAgreement with the distillation teacher ({who}): {_fmt(stats['agreement'])} "
              f"of steps; {_fmt(stats['agreement_success'])} in successes, "
              f"{_fmt(stats['agreement_failure'])} in failures. Share of each action the "
              "policy took where the teacher asked for:")
        print(format_confusion(stats["confusion"], ACTION_NAMES))
    else:
        print(f"\nMean |action - teacher's action| ({who}): {_fmt(stats['action_mae'])}; "
              f"{_fmt(stats['action_mae_success'])} in successes, "
              f"{_fmt(stats['action_mae_failure'])} in failures.")


def _cmd_video(args: argparse.Namespace) -> int:
    from eval.record import record_video

    policy = {"policy": "checkpoint"}.get(args.policy, args.policy)
    if policy == "checkpoint" and not args.target:
        raise UserError("give a checkpoint or run directory, or --policy oracle|random")
    if args.failures:
        return _video_failures(args, policy)
    episodes = 2 if args.episodes is None else args.episodes
    seed = 0 if args.seed is None else args.seed
    out = Path(args.out) if args.out else rundir.default_output(args.target,
                                                       rundir.video_file(args.policy))
    result = record_video(args.target, out=out, policy=policy, episodes=episodes,
                          split=args.split, seed=seed, gif=not args.no_gif)
    wins = sum(r["success"] for r in result["episodes"])
    print(f"Wrote {result['mp4']} ({result['frames']} frames, {wins}/{episodes} "
          "episodes reached the goal)")
    if result["gif"]:
        print(f"      {result['gif']}")
    return 0


def _video_failures(args: argparse.Namespace, policy: str) -> int:
    """`video --failures N`: the first N failed evaluation episodes, one MP4 each."""
    from eval.record import failures_report, record_failures
    from eval.rollout import TEST_SEED

    # the episodes of `embodied eval` under its defaults, unless told otherwise
    out = Path(args.out) if args.out else rundir.default_output(
        args.target, rundir.failures_dir_name(args.split, args.policy))
    index = record_failures(args.target, out, args.failures, policy=policy,
                            episodes=200 if args.episodes is None else args.episodes,
                            split=args.split, seed=TEST_SEED if args.seed is None else args.seed,
                            progress=True)
    print("\n".join(failures_report(index, out)))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from policies.export import export_policy

    report = export_policy(args.target, fmt=args.format, out=args.out)
    print(f"Wrote {report['path']} ({args.format}) from {report['checkpoint']} "
          f"(sha256 {report['checkpoint_sha256'][:12]})")
    print(f"Parity on {report['n_obs']} recorded observations: max |diff| "
          f"{report['max_abs_diff']:.2e}, action agreement {report['action_agreement']:.3f}")
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from eval.deploy_report import write_deploy_report
    from policies.deploy.loop import run_deploy

    def serving(url: str) -> None:  # called once the port is open
        print(f"Serving Prometheus metrics on {url}", flush=True)

    report = run_deploy(args.target, rate=args.rate, duration=args.duration,
                        record=args.record, metrics_port=args.metrics_port,
                        inject_malformed_every=args.inject_malformed_every, on_metrics=serving)
    out = Path(args.out) if args.out else rundir.default_output(args.target, "deploy")
    files = write_deploy_report(report, out)
    lat = report["latency_ms"]["total"]
    miss = report["deadline_misses"]

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f} ms"

    print(f"{report['ticks']} ticks at {args.rate:g} Hz: sense->act p50 {ms(lat['p50'])}, "
          f"p99 {ms(lat['p99'])}; jitter p99 {ms(report['period_jitter_ms']['p99'])}; "
          f"deadline misses {miss['count']} ({miss['percent']:.2f} %); "
          f"rejected messages {report['rejected_messages']}; episodes {report['episodes']}, "
          f"successes {report['successes']}")
    reused = "reused" if report["model_reused"] else "exported now"
    print(f"Model: {report['model']} ({reused}) from {report['checkpoint']} "
          f"(sha256 {report['checkpoint_sha256'][:12]})")
    if args.record:
        print(f"Bag: {args.record}")
    print("Report: " + ", ".join(str(p) for p in files.values()))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    out = Path(args.out)
    kind = args.kind
    if kind in ("infer", "loop") and not args.target:
        raise UserError(f"bench {kind} needs a checkpoint or run directory")
    if kind == "env":
        from eval.bench import bench_env, bench_oracle, format_env_bench, format_oracle_bench

        result = bench_env(steps=args.steps, resets=args.resets)
        result["oracle"] = bench_oracle(episodes=args.episodes)
        text = format_env_bench(result) + "\n" + format_oracle_bench(result["oracle"])
    elif kind == "infer":
        from eval.bench_deploy import bench_infer, format_infer

        result = bench_infer(args.target, n=args.steps)
        text = format_infer(result)
    elif kind == "loop":
        from eval.bench_deploy import bench_loop, format_loop

        result = bench_loop(args.target, ticks=args.ticks, busy_core=not args.no_busy)
        text = format_loop(result)
    elif kind == "train":
        from training.bench import bench_train, format_train

        result = bench_train(steps=args.steps)
        text = format_train(result)
    elif kind == "sweep":
        from training.sweep_bench import bench_sweep, format_sweep

        result = bench_sweep(out_dir=out)
        text = format_sweep(result)
    else:
        from training.bench import bench_learn, format_learn

        result = bench_learn(budget_s=args.minutes * 60, out_dir=out)
        text = format_learn(result)
    path = rundir.write_json(out / rundir.bench_file(kind), result)
    print(text)
    print(f"\nWrote {path}")
    return 0



def _cmd_sweep(args: argparse.Namespace) -> int:
    from datetime import datetime

    from training.sweep import run_sweep
    from training.sweep_plan import SweepSpec, parse_grid
    from training.sweep_report import format_report

    if args.resume:
        asked = [flag for flag, given in (("--grid", args.grid), ("--samples", args.samples),
                                          ("overrides", args.overrides)) if given]
        if asked:
            raise UserError(f"--resume continues a sweep with its saved plan; drop {asked[0]}")
        out, spec = Path(args.resume), None
    else:
        spec = SweepSpec(config=args.config, overrides=tuple(args.overrides), seeds=args.seeds,
                         grid=parse_grid(args.grid or []), search=args.search,
                         samples=args.samples or 0, scheduler=args.scheduler,
                         cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                         test_episodes=args.test_episodes, search_seed=args.search_seed)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(args.out) if args.out else Path(rundir.DEFAULT_RUNS_DIR) / (
            f"sweep__{Path(args.config).stem}__{stamp}")
    result = run_sweep(spec, out, address=args.address, resume=bool(args.resume),
                       argv=args.argv)
    if result.interrupted:
        return 0
    print("\n" + format_report(result.report))
    print(f"Sweep folder: {result.out} ({rundir.SWEEP_FILE}, {rundir.SWEEP_TABLE_FILE}, "
          f"{rundir.SWEEP_CURVES_FIGURE}, {rundir.SWEEP_FINAL_FIGURE}, "
          f"{rundir.SWEEP_TRIALS_DIR}/)")
    return 0


def _cmd_writeup(args: argparse.Namespace) -> int:
    from writeup.build import write_writeup

    if not Path(args.run_dir).is_dir():
        raise UserError(f"run directory {args.run_dir} does not exist")
    if args.sweep is not None and not Path(args.sweep).is_dir():
        raise UserError(f"sweep folder {args.sweep} does not exist; pass a folder that "
                        "`embodied sweep` wrote")
    out = None if args.out is None else Path(args.out)  # None: <run>/writeup
    sweep = None if args.sweep is None else Path(args.sweep)
    files = write_writeup(Path(args.run_dir), Path(args.bench), out_dir=out, sweep_dir=sweep)
    for path in files.values():
        print(f"Wrote {path}")
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    """The whole pipeline on built-in defaults: train, evaluate, video, benchmarks, writeup."""
    from training.quickstart import QuickstartSettings, quickstart

    result = quickstart(Path(args.out), QuickstartSettings(episodes=args.episodes),
                        skip_train=args.skip_train, quiet=args.quiet, argv=args.argv,
                        log=lambda line: print(line, flush=True))
    if result.interrupted:
        print(f"Interrupted; resume the training with: embodied train --resume "
              f"{result.run_dir}")
        return 0
    print(f"\nDone in {result.minutes:.1f} min. Files:")
    for path in result.files:
        print(f"  {path}")
    return 0
