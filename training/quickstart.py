"""`embodied quickstart`: the whole pipeline on built-in defaults, as one typed function.

Train (or take the committed reference checkpoint), evaluate on the held-out split beside the
oracle and a random policy, record a video, run quick benchmarks and write the engineering
notes, all into one folder:

    <out>/run/             the run directory (training files, eval_heldout/, video_policy.mp4)
    <out>/bench/           bench_env.json
    <out>/writeup/         ENGINEERING_NOTES.md, index.html, figures/
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rundir
from envs.config import ConfigError
from eval.rollout import TEST_SEED
from policies.checkpoint import resolve_checkpoint
from training.config import load_config
from training.experts import distillation_teacher
from training.train import train

REFERENCE_CHECKPOINT = (Path(__file__).resolve().parent.parent / "policies" / "reference"
                        / rundir.POLICY_FILE)
"""The committed checkpoint `--skip-train` evaluates instead of training one."""

STAGES = 5


@dataclass(frozen=True)
class QuickstartSettings:
    """How much work each stage does; the defaults are the command's (about five minutes)."""

    config: str = "quickstart"
    """Training preset (or YAML path)."""
    episodes: int = 50
    """Held-out evaluation episodes per policy."""
    video_episodes: int = 2
    """Episodes in the video."""
    bench_resolution: int = 64
    """Camera resolution of the env benchmark, pixels."""
    bench_steps: int = 300
    """Env steps per benchmark measurement."""
    bench_resets: int = 100
    """Resets in the benchmark's memory check."""
    oracle_episodes: int = 20
    """Episodes of the oracle benchmark."""

    def __post_init__(self) -> None:
        for name in ("episodes", "video_episodes", "bench_resolution", "bench_steps",
                     "bench_resets", "oracle_episodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"quickstart {name}: must be >= 1, got {getattr(self, name)}")


@dataclass
class QuickstartResult:
    """What the pipeline produced. `interrupted`: training was stopped by Ctrl-C, so the later
    stages did not run (resume with `embodied train --resume <run_dir>`)."""

    out: Path
    run_dir: Path
    checkpoint: Path | None
    interrupted: bool
    summary: dict[str, Any] | None = None
    files: list[Path] = field(default_factory=list)
    minutes: float = 0.0


def _stage(log: Callable[[str], None], n: int, title: str) -> None:
    log(f"\n[{n}/{STAGES}] {title}")


def quickstart(out: str | Path, settings: QuickstartSettings = QuickstartSettings(),
               skip_train: bool = False, quiet: bool = False, argv: list[str] | None = None,
               reference: Path = REFERENCE_CHECKPOINT,
               log: Callable[[str], None] = print) -> QuickstartResult:
    """Run the pipeline into `out` (absent or empty); `log` receives the stage headings.

    With `skip_train`, `reference` is evaluated instead of a new training run. Raises
    `ConfigError` when `out` holds files or the reference checkpoint is missing.
    """
    from eval import metrics
    from eval.bench import bench_env, bench_oracle
    from eval.record import record_video
    from eval.report import evaluate_all
    from writeup.build import write_writeup

    start = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists and is not empty; pass another --out")
    run_dir, bench_dir = out / "run", out / "bench"
    if skip_train:
        _stage(log, 1, f"Training skipped: using the reference checkpoint {reference}")
        if not Path(reference).is_file():
            raise ConfigError(f"the reference checkpoint {reference} is missing; run without "
                              "--skip-train")
        target = Path(reference)
        run_dir.mkdir(parents=True)
    else:
        _stage(log, 1, f"Training the camera policy (config: {settings.config})")
        trained = train(load_config(settings.config), run_dir, argv=argv, quiet=quiet)
        if trained.interrupted:
            return QuickstartResult(out, run_dir, trained.final_checkpoint, True,
                                    minutes=(time.perf_counter() - start) / 60)
        target = resolve_checkpoint(run_dir)
    _stage(log, 2, f"Evaluating on the held-out split ({settings.episodes} episodes) beside "
                   "the oracle and a random policy")
    eval_dir = run_dir / rundir.eval_dir_name("heldout")
    summary = evaluate_all(target, split="heldout", episodes=settings.episodes, seed=TEST_SEED,
                           out_dir=eval_dir, progress=not quiet,
                           teacher=distillation_teacher(target))
    log(metrics.format_table({n: summary[n] for n in summary["policies"]}))
    _stage(log, 3, "Recording a video of the policy")
    video = record_video(target, out=run_dir / rundir.video_file("policy"),
                         episodes=settings.video_episodes)
    _stage(log, 4, "Quick benchmarks (environment throughput, oracle)")
    env_bench = bench_env(resolutions=(settings.bench_resolution,), steps=settings.bench_steps,
                          resets=settings.bench_resets)
    env_bench["oracle"] = bench_oracle(episodes=settings.oracle_episodes)
    bench_file = rundir.write_json(bench_dir / rundir.bench_file("env"), env_bench)
    _stage(log, 5, "Writing the engineering notes")
    notes = write_writeup(run_dir, bench_dir, out_dir=out / rundir.WRITEUP_DIR)
    files = [eval_dir / rundir.SUMMARY_FILE, Path(video["mp4"]),
             *([Path(video["gif"])] if video["gif"] else []), bench_file,
             *(Path(p) for p in notes.values())]
    return QuickstartResult(out, run_dir, Path(target), False, summary, files,
                            (time.perf_counter() - start) / 60)
