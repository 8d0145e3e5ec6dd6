"""`embodied`: the command line. Each subcommand is a thin shell over a typed function."""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle torch threads must sleep, not spin, or they starve the env
# workers that render on the other core (a 5-10x collapse in steps/s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


class UserError(Exception):
    """A mistake in the command line or its inputs: reported as one line, exit code 2."""


def _cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_config, replace
    from training.run import default_run_dir
    from training.train import load_run_config, train

    if args.resume:
        run_dir = Path(args.resume)
        cfg = load_run_config(run_dir)
        if args.overrides:
            raise UserError("--resume continues a run with its saved config; drop the overrides")
    else:
        cfg = load_config(args.config, args.overrides)
    if args.device:
        cfg = replace(cfg, device=args.device)
    if not args.resume:
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg, Path(
            args.config).stem)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(f"run directory {run_dir} already exists and is not empty; "
                            f"pick another --run-dir or continue it with --resume {run_dir}")
    result = train(cfg, run_dir, argv=args.argv, resume=bool(args.resume), quiet=args.quiet)
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


def _default_out(target: str | None, name: str) -> Path:
    base = Path(target) if target else Path("runs")
    folder = base if base.is_dir() else base.parent
    return folder / name


def _cmd_eval(args: argparse.Namespace) -> int:
    from eval import metrics
    from eval.report import evaluate_all, gate, parse_sweep, sweep

    out = Path(args.out) if args.out else _default_out(args.target, f"eval_{args.split}")
    summary = evaluate_all(args.target, split=args.split, episodes=args.episodes,
                           seed=args.seed, out_dir=out, progress=not args.quiet)
    rows = {name: summary[name] for name in summary["policies"]}
    print(f"\n{args.split} split, {args.episodes} episodes, seed {args.seed} "
          "(95 % bootstrap CIs):")
    print(metrics.format_table(rows))
    ratio = summary.get("spl_vs_oracle")
    if ratio is not None:
        print(f"Policy SPL is {ratio:.0%} of the oracle's.")
    for spec in args.sweep or []:
        factor, strengths = parse_sweep(spec)
        data = sweep(args.target, factor, strengths, split=args.split,
                     episodes=args.sweep_episodes, seed=args.seed, out_dir=out,
                     progress=not args.quiet)
        print(f"\nRobustness sweep ({factor}):")
        for row in data["rows"]:
            print(f"  strength {row['strength']:<4} {row['policy']:<7} "
                  f"success {row['success_rate']:.2f}  SPL {row['spl']:.2f}")
        print(f"  plot: {out / f'sweep_{factor}.png'}")
    print(f"Results: {out}/summary.json, {out}/episodes_*.jsonl")
    if args.min_success is not None and not gate(summary, args.min_success):
        print(f"FAIL: success rate {summary['policy']['success_rate']:.2f} is below "
              f"--min-success {args.min_success}", file=sys.stderr)
        return 1
    return 0


def _cmd_video(args: argparse.Namespace) -> int:
    from eval.record import record_video

    policy = {"policy": "checkpoint"}.get(args.policy, args.policy)
    if policy == "checkpoint" and not args.target:
        raise UserError("give a checkpoint or run directory, or --policy oracle|random")
    out = Path(args.out) if args.out else _default_out(args.target, f"video_{args.policy}.mp4")
    result = record_video(args.target, out=out, policy=policy, episodes=args.episodes,
                          split=args.split, seed=args.seed, gif=not args.no_gif)
    wins = sum(r["success"] for r in result["episodes"])
    print(f"Wrote {result['mp4']} ({result['frames']} frames, {wins}/{args.episodes} "
          "episodes reached the goal)")
    if result["gif"]:
        print(f"      {result['gif']}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from policies.export import export_policy

    report = export_policy(args.target, fmt=args.format, out=args.out)
    print(f"Wrote {report['path']} ({args.format})")
    print(f"Parity on {report['n_obs']} recorded observations: max |diff| "
          f"{report['max_abs_diff']:.2e}, action agreement {report['action_agreement']:.3f}")
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from policies.deploy import run_deploy, write_deploy_report

    if args.metrics_port is not None:
        print(f"Serving Prometheus metrics on http://127.0.0.1:{args.metrics_port}/metrics")
    report = run_deploy(args.target, rate=args.rate, duration=args.duration,
                        record=args.record, metrics_port=args.metrics_port,
                        inject_malformed_every=args.inject_malformed_every)
    out = Path(args.out) if args.out else _default_out(args.target, "deploy")
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
    if args.record:
        print(f"Bag: {args.record}")
    print("Report: " + ", ".join(str(p) for p in files.values()))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from training.run import write_json

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
    else:
        from training.bench import bench_learn, format_learn

        result = bench_learn(budget_s=args.minutes * 60, out_dir=out)
        text = format_learn(result)
    write_json(out / f"bench_{kind}.json", result)
    print(text)
    print(f"\nWrote {out / f'bench_{kind}.json'}")
    return 0


REFERENCE_CHECKPOINT = Path(__file__).resolve().parent / "policies" / "reference" / "policy.pt"


def _stage(n: int, total: int, title: str) -> None:
    print(f"\n[{n}/{total}] {title}", flush=True)


def _cmd_writeup(args: argparse.Namespace) -> int:
    from writeup.build import write_writeup

    if not Path(args.run_dir).is_dir():
        raise UserError(f"run directory {args.run_dir} does not exist")
    files = write_writeup(Path(args.run_dir), Path(args.bench), out_dir=Path(args.out))
    for path in files.values():
        print(f"Wrote {path}")
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    """The whole pipeline on built-in defaults: train, evaluate, video, benchmarks, writeup."""
    import time

    from eval import metrics
    from eval.bench import bench_env, bench_oracle
    from eval.record import record_video
    from eval.report import evaluate_all
    from eval.rollout import TEST_SEED
    from training.config import load_config
    from training.run import write_json
    from training.train import train

    start = time.perf_counter()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} already exists and is not empty; pass another --out")
    run_dir, bench_dir = out / "run", out / "bench"
    total = 5
    if args.skip_train:
        _stage(1, total, f"Training skipped: using the reference checkpoint {REFERENCE_CHECKPOINT}")
        if not REFERENCE_CHECKPOINT.is_file():
            raise UserError("the reference checkpoint is missing; run without --skip-train")
        target = REFERENCE_CHECKPOINT
        run_dir.mkdir(parents=True)
    else:
        _stage(1, total, "Training the camera policy (config: quickstart)")
        cfg = load_config("quickstart")
        result = train(cfg, run_dir, argv=args.argv, quiet=args.quiet)
        if result.interrupted:
            print(f"Interrupted; resume the training with: embodied train --resume {run_dir}")
            return 0
        target = result.best_checkpoint or result.final_checkpoint
    _stage(2, total, f"Evaluating on the held-out split ({args.episodes} episodes) beside the "
                     "oracle and a random policy")
    summary = evaluate_all(target, split="heldout", episodes=args.episodes, seed=TEST_SEED,
                           out_dir=run_dir / "eval_heldout", progress=not args.quiet)
    print(metrics.format_table({n: summary[n] for n in summary["policies"]}))
    _stage(3, total, "Recording a video of the policy")
    video = record_video(target, out=run_dir / "video_policy.mp4", episodes=2)
    _stage(4, total, "Quick benchmarks (environment throughput, oracle)")
    env_bench = bench_env(resolutions=(64,), steps=300, resets=100)
    env_bench["oracle"] = bench_oracle(episodes=20)
    write_json(bench_dir / "bench_env.json", env_bench)
    _stage(5, total, "Writing the engineering notes")
    from writeup.build import write_writeup

    files = write_writeup(run_dir, bench_dir, out_dir=out / "writeup")
    minutes = (time.perf_counter() - start) / 60
    print(f"\nDone in {minutes:.1f} min. Files:")
    for path in [run_dir / "eval_heldout" / "summary.json", video["mp4"], video["gif"],
                 bench_dir / "bench_env.json", *files.values()]:
        if path:
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
    p.add_argument("--min-success", type=float, metavar="X",
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
    p.add_argument("--episodes", type=_positive_int, default=2)
    p.add_argument("--split", default="heldout", choices=["train", "heldout"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE.mp4")
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
    p.add_argument("--metrics-port", type=int, metavar="PORT",
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
    p.add_argument("--out", default="writeup", help="output folder")
    p.set_defaults(func=_cmd_writeup)

    p = sub.add_parser("bench", help="benchmarks that print figures and write JSON")
    p.add_argument("kind", choices=["env", "train", "learn", "infer", "loop"])
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
    except KeyboardInterrupt:
        print(f"\nembodied {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
