"""`embodied`: the command line. Each subcommand is a thin shell over a typed function."""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle torch threads must sleep, not spin, or they starve the env
# workers that render on the other core (a 5-10x collapse in steps/s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


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
    result = train(cfg, run_dir, argv=sys.argv[1:], resume=bool(args.resume), quiet=args.quiet)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embodied",
        description="Camera-only robot navigation: train, evaluate, record, export, deploy, "
                    "benchmark, write up.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a camera policy (PPO or teacher->student)")
    p.add_argument("--config", default="default",
                   help="preset in configs/ (quickstart, default, ppo, ...) or a YAML path")
    p.add_argument("--run-dir", help="output folder (default: runs/<name>__<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="learner device")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="config overrides, e.g. distill.total_timesteps=20000 env.strength=1.5")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    from envs.config import ConfigError
    from policies.checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, ConfigError, CheckpointError, FileNotFoundError) as err:
        print(f"embodied {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
