"""`embodied`: the command line. Each subcommand is a thin shell over a typed function."""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle torch threads must sleep, not spin, or they starve the env
# workers that render on the other core (a 5-10x collapse in steps/s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys  # noqa: E402

from embodied_cli.commands import UserError  # noqa: E402
from embodied_cli.parser import build_parser  # noqa: E402

__all__ = ["UserError", "build_parser", "main"]


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

