"""`embodied`: the command line. Each subcommand is a thin shell over a typed function."""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle torch threads must sleep, not spin, or they starve the env
# workers that render on the other core (a 5-10x collapse in steps/s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import rundir  # noqa: E402


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {value}")
    return value


class UserError(Exception):
    """A mistake in the command line or its inputs: reported as one line, exit code 2."""


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from training.config import load_config
    from training.run import default_run_dir
    from training.train import load_run_config, train

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


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a success rate in [0, 1], got {text!r}"
                                         ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a success rate in [0, 1], got {value:g}")
    return value


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _cmd_eval(args: argparse.Namespace) -> int:
    from eval import metrics
    from eval.report import evaluate_all, gate
    from eval.robustness import parse_sweep, sweep

    # every value is checked before the evaluation starts, so bad input writes nothing
    sweeps = [parse_sweep(spec) for spec in args.sweep or []]
    out = Path(args.out) if args.out else rundir.default_output(args.target,
                                                       rundir.eval_dir_name(args.split))
    summary = evaluate_all(args.target, split=args.split, episodes=args.episodes,
                           seed=args.seed, out_dir=out, progress=not args.quiet)
    rows = {name: summary[name] for name in summary["policies"]}
    print(f"\n{args.split} split, {args.episodes} episodes, seed {args.seed} "
          "(95 % bootstrap CIs):")
    print(metrics.format_table(rows))
    ratio = summary.get("spl_vs_oracle")
    if ratio is not None:
        print(f"Policy SPL is {ratio:.0%} of the oracle's.")
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
    out = None if args.out is None else Path(args.out)  # None: <run>/writeup
    files = write_writeup(Path(args.run_dir), Path(args.bench), out_dir=out)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embodied",
        description="Camera-only robot navigation: train, evaluate, record, export, deploy, "
                    "benchmark, write up.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a camera policy (PPO or teacher->student)")
    p.add_argument("--config", default="default",
                   help="preset in training/configs/ (quickstart, default, ppo, ...) "
                        "or a YAML path")
    p.add_argument("--run-dir", help="output folder (default: runs/<name>__<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--from", dest="resume_from", metavar="STEP_DIR",
                   help="with --resume: start from this checkpoint folder (e.g. "
                        "step_000004000) instead of the latest one")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="learner device")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="config overrides, e.g. distill.total_timesteps=20000 env.strength=1.5")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="score a policy beside the oracle and random baselines")
    p.add_argument("target", metavar="CHECKPOINT|RUN_DIR")
    p.add_argument("--split", default="heldout", choices=["train", "heldout"])
    p.add_argument("--episodes", type=_positive_int, default=200)
    p.add_argument("--seed", type=int, default=1,
                   help="evaluation seed (default 1; training picks its best model on seed 0)")
    p.add_argument("--out", help="output folder (default: <run>/eval_<split>)")
    p.add_argument("--min-success", type=_rate, metavar="X",
                   help="exit 1 when the success rate is below X (a pipeline gate)")
    p.add_argument("--sweep", action="append", metavar="FACTOR=S1,S2,...",
                   help="robustness sweep, e.g. strength=0,0.5,1,1.5,2 or lighting=0,1,2 "
                        "(factors: strength, lighting, appearance, layout, physics, camera, "
                        "image_noise); repeatable")
    p.add_argument("--sweep-episodes", type=_positive_int, default=50)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("video", help="render episodes to MP4 (+ GIF) with overlays")
    p.add_argument("target", nargs="?", metavar="CHECKPOINT|RUN_DIR")
    p.add_argument("--policy", default="policy", choices=["policy", "oracle", "random"])
    p.add_argument("--failures", type=_positive_int, metavar="N",
                   help="render the first N failed evaluation episodes (spread across failure "
                        "modes), one MP4 each, plus index.json; the episodes are embodied "
                        "eval's with the same --split and --seed")
    p.add_argument("--episodes", type=_positive_int,
                   help="episodes to record (default 2); with --failures, the most episodes "
                        "searched for failures (default 200)")
    p.add_argument("--split", default="heldout", choices=["train", "heldout"])
    p.add_argument("--seed", type=int,
                   help="evaluation seed (default 0; with --failures 1, as embodied eval)")
    p.add_argument("--out", metavar="FILE.mp4|DIR",
                   help="the video (default: <run>/video_<policy>.mp4); with --failures a "
                        "folder (default: <run>/failures_<split>)")
    p.add_argument("--no-gif", action="store_true", help="skip the small GIF")
    p.set_defaults(func=_cmd_video)

    p = sub.add_parser("export", help="export the camera policy to ONNX or TorchScript")
    p.add_argument("target", metavar="CHECKPOINT|RUN_DIR")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("--out", metavar="FILE")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("deploy", help="run the policy in a fixed-rate ROS 2-style loop")
    p.add_argument("target", metavar="CHECKPOINT|RUN_DIR")
    p.add_argument("--rate", type=float, default=20.0, help="control rate, Hz")
    p.add_argument("--duration", type=float, default=60.0, help="seconds")
    p.add_argument("--record", metavar="BAG_DIR", help="write a rosbag2 (MCAP) here")
    p.add_argument("--metrics-port", type=_port, metavar="PORT",
                   help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument("--inject-malformed-every", type=int, default=0, metavar="N",
                   help="publish a malformed image every N ticks (robustness demo)")
    p.add_argument("--out", help="report folder (default: <run>/deploy)")
    p.set_defaults(func=_cmd_deploy)

    p = sub.add_parser("quickstart", help="the whole pipeline on the built-in defaults")
    p.add_argument("--out", default="runs/quickstart", help="folder for everything it writes")
    p.add_argument("--skip-train", action="store_true",
                   help="use the committed reference checkpoint instead of training")
    p.add_argument("--episodes", type=_positive_int, default=50, help="held-out episodes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_quickstart)

    p = sub.add_parser("writeup", help="generate the engineering notes from a run")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--bench", default="runs/bench", help="folder with bench_*.json")
    p.add_argument("--out", help="output folder (default: RUN_DIR/writeup); the committed "
                   "notes are rebuilt only with --out writeup")
    p.set_defaults(func=_cmd_writeup)

    p = sub.add_parser("sweep", help="seeds and hyper-parameters as Ray Tune trials "
                                     "(local, or a Ray cluster with --address)")
    p.add_argument("--config", default="default", help="base preset or YAML path")
    p.add_argument("--seeds", type=_positive_int, default=3,
                   help="training seeds per configuration (the config's seed, +1, ...)")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2|KEY=LOW..HIGH",
                   help="a swept setting, e.g. distill.learning_rate=5e-4,1e-3; a range "
                        "(log:LOW..HIGH for log-uniform) needs --search random|optuna; "
                        "repeatable")
    p.add_argument("--search", default="grid", choices=["grid", "random", "optuna"])
    p.add_argument("--samples", type=_positive_int, help="configurations random/optuna draw")
    p.add_argument("--search-seed", type=int, default=0, help="seed of random/optuna search")
    p.add_argument("--scheduler", default="fifo", choices=["fifo", "asha"],
                   help="asha stops weak trials at their periodic validations")
    p.add_argument("--cpus-per-trial", type=_positive_int,
                   help="default: n_envs with subprocess envs, else 1")
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument("--test-episodes", type=_positive_int, default=100,
                   help="heldout test episodes scoring each trial's best checkpoint")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="join this Ray cluster (default: RAY_ADDRESS, else Ray on this machine)")
    p.add_argument("--out", help="sweep folder (default: runs/sweep__<config>__<time>); on "
                                 "a cluster, a path every node sees")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="config overrides for every trial")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("bench", help="benchmarks that print figures and write JSON")
    p.add_argument("kind", choices=["env", "train", "learn", "infer", "loop", "sweep"])
    p.add_argument("target", nargs="?", metavar="CHECKPOINT|RUN_DIR",
                   help="for infer and loop")
    p.add_argument("--out", default="runs/bench", help="folder for bench_<kind>.json")
    p.add_argument("--steps", type=_positive_int, default=1000,
                   help="env: steps per measurement; infer: calls; train: steps per layout")
    p.add_argument("--resets", type=_positive_int, default=1000, help="env: resets for RSS")
    p.add_argument("--episodes", type=_positive_int, default=100, help="env: oracle episodes")
    p.add_argument("--ticks", type=_positive_int, default=10000, help="loop: ticks per rate")
    p.add_argument("--no-busy", action="store_true", help="loop: skip the busy-core runs")
    p.add_argument("--minutes", type=float, default=20.0, help="learn: budget per method")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    from envs.config import ConfigError
    from policies.checkpoint import CheckpointError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except (UserError, ConfigError, CheckpointError, OSError, ValueError) as err:
        print(f"embodied {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        # a second Ctrl-C during training carries what was kept and how to resume
        print(f"\nembodied {args.command}: {str(err) or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
