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
    from training.config import load_config
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
            from training.config import replace
            cfg = replace(cfg, device=args.device)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embodied",
        description="Camera-only robot navigation: train, evaluate, record, export, deploy, "
                    "benchmark, write up.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a camera policy (PPO or teacher->student)")
    p.add_argument("--config", default="default",
                   help="preset in training/configs/ (quickstart, default, ppo, ...) or a YAML path")
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
    p.add_argument("--seed", type=int, default=0)
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
    except (UserError, ConfigError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"embodied {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
