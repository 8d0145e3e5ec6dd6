"""The `embodied` argument parser: one subcommand per stage, each bound to its shell in
`embodied_cli.commands`, with argument types that reject bad values in one line."""

from __future__ import annotations

import argparse

from embodied_cli import commands as c


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


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a success rate in [0, 1], got {text!r}"
                                         ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a success rate in [0, 1], got {value:g}")
    return value


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
    p.set_defaults(func=c._cmd_train)

    p = sub.add_parser("eval", help="score a policy beside the oracle and random baselines")
    p.add_argument("target", metavar="CHECKPOINT|RUN_DIR")
    p.add_argument("--split", default="heldout", choices=["train", "heldout"])
    p.add_argument("--episodes", type=_positive_int, default=200)
    p.add_argument("--seed", type=int, default=1,
                   help="evaluation seed (default 1; training validates on seed 0)")
    p.add_argument("--out", help="output folder (default: <run>/eval_<split>)")
    p.add_argument("--min-success", type=_rate, metavar="X",
                   help="exit 1 when the success rate is below X (a pipeline gate)")
    p.add_argument("--sweep", action="append", metavar="FACTOR=S1,S2,...",
                   help="robustness sweep, e.g. strength=0,0.5,1,1.5,2 or lighting=0,1,2 "
                        "(factors: strength, lighting, appearance, layout, physics, camera, "
                        "image_noise); repeatable")
    p.add_argument("--sweep-episodes", type=_positive_int, default=50)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=c._cmd_eval)

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
    p.set_defaults(func=c._cmd_video)

    p = sub.add_parser("export", help="export the camera policy to ONNX or TorchScript")
    p.add_argument("target", metavar="CHECKPOINT|RUN_DIR")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("--out", metavar="FILE")
    p.set_defaults(func=c._cmd_export)

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
    p.set_defaults(func=c._cmd_deploy)

    p = sub.add_parser("quickstart", help="the whole pipeline on the built-in defaults")
    p.add_argument("--out", default="runs/quickstart", help="folder for everything it writes")
    p.add_argument("--skip-train", action="store_true",
                   help="use the committed reference checkpoint instead of training")
    p.add_argument("--episodes", type=_positive_int, default=50, help="held-out episodes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=c._cmd_quickstart)

    p = sub.add_parser("writeup", help="generate the engineering notes from a run")
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run directory, or a sweep folder (its notes describe a typical seed "
                        "of the best configuration and add the statistics across seeds)")
    p.add_argument("--sweep", metavar="SWEEP_DIR",
                   help="a folder `embodied sweep` wrote: adds the Across seeds section")
    p.add_argument("--bench", default="runs/bench", help="folder with bench_*.json")
    p.add_argument("--out", help="output folder (default: RUN_DIR/writeup); the committed "
                   "notes are rebuilt only with --out writeup")
    p.set_defaults(func=c._cmd_writeup)

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
                   help="heldout test episodes scoring each trial's final policy")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="join this Ray cluster (default: RAY_ADDRESS, else Ray on this machine)")
    p.add_argument("--out", help="sweep folder (default: runs/sweep__<config>__<time>); on "
                                 "a cluster, a path every node sees")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="config overrides for every trial")
    p.set_defaults(func=c._cmd_sweep)

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
    p.set_defaults(func=c._cmd_bench)
    return parser
