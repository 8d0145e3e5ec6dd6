"""The `embodied` commands that produce each artifact, rebuilt from what the artifacts record."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import rundir
from writeup.collect import (
    BENCH_KINDS,
    DEFAULT_BENCH_DIR,
    FAILURES_INDEX,
    HELDOUT_SUMMARY,
    SEEDS,
    SWEEP_BENCH,
    SWEEP_PREFIX,
)

FAILURE_VIDEOS = 5
"""Failure videos the notes ask for when a run has none."""


def fill(cmd: str) -> str:
    """The sentence a section shows in place of numbers it has no artifact for."""
    return f"Run `{cmd}` to fill this table."


def produce(cmd: str) -> str:
    """The same, for a figure or a paragraph."""
    return f"Run `{cmd}` to produce it."


def _q(path: str) -> str:
    return shlex.quote(path)


def _same_dir(a: str, b: str) -> bool:
    return PurePath(a) == PurePath(b)


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a mapping, else an empty one (a file in an unexpected shape)."""
    return value if isinstance(value, Mapping) else {}


class Commands:
    """Command lines for one run directory and one benchmark folder."""

    def __init__(self, data: Mapping[str, Any]):
        self.run = _q(str(data.get("run_dir", "RUN_DIR")))
        sweep = data.get("sweep_dir")
        self.sweep_dir = None if sweep is None else _q(str(sweep))
        bench = str(data.get("bench_dir", DEFAULT_BENCH_DIR))
        self.bench = bench
        self._bench_out = "" if _same_dir(bench, DEFAULT_BENCH_DIR) else f" --out {_q(bench)}"
        # None (notes not being written): the command's default folder applies, no --out
        self.out = None if data.get("out_dir") is None else str(data["out_dir"])
        self.files = data.get("files", {})
        self.media = data.get("media", {})

    # -- what produces a missing artifact ------------------------------------------------
    def train(self) -> str:
        return f"embodied train --config default --run-dir {self.run}"

    def eval(self) -> str:
        return f"embodied eval {self.run}"

    def sweep(self) -> str:
        return f"embodied eval {self.run} --sweep strength=0,0.5,1,1.5,2"

    def seeds(self) -> tuple[str, str]:
        """A sweep over training seeds, and these notes rebuilt with it."""
        folder = self.sweep_dir or "runs/sweep"
        return (f"embodied sweep --config default --seeds 5 --out {folder}",
                self.writeup(sweep=folder))

    def video(self) -> str:
        return f"embodied video {self.run}"

    def failures(self) -> str:
        """Failure videos of the held-out episodes the summary counted (its seed)."""
        summary = _mapping(self.files.get(HELDOUT_SUMMARY))
        return (f"embodied video {self.run} --failures {FAILURE_VIDEOS}"
                + options(("seed", summary.get("seed"))))

    def export(self) -> str:
        return f"embodied export {self.run}"

    def deploy(self) -> str:
        return f"embodied deploy {self.run}"

    def bench_cmd(self, kind: str) -> str:
        target = f" {self.run}" if kind in ("infer", "loop") else ""
        return f"embodied bench {kind}{target}{self._bench_out}"

    def writeup(self, sweep: str | None = None) -> str:
        """The notes' own command; `sweep` (already quoted) names a sweep folder to add."""
        bench = "" if _same_dir(self.bench, DEFAULT_BENCH_DIR) else f" --bench {_q(self.bench)}"
        sweep = sweep or self.sweep_dir
        bench += "" if sweep is None else f" --sweep {sweep}"
        if self.out is None:
            return f"embodied writeup {self.run}{bench}"
        return f"embodied writeup {self.run}{bench} --out {_q(self.out)}"

    # -- what reproduces the artifacts that exist ----------------------------------------
    def reproduce(self) -> list[tuple[str, list[str]]]:
        """(comment, command lines) groups, each command rebuilt from its artifact's record."""
        groups = [(f"training (from {rundir.RUN_FILE})", self._train_lines()),
                  ("held-out evaluation with baselines and robustness sweeps",
                   self._eval_lines()),
                  ("video, export and the deployment loop", self._use_lines()),
                  ("the sweep across seeds (from sweep.json)", self._sweep_lines()),
                  ("benchmarks", self._bench_lines()),
                  ("these notes", [self.writeup()])]
        return [(comment, lines) for comment, lines in groups if lines]

    def _train_lines(self) -> list[str]:
        run = _mapping(self.files.get(rundir.RUN_FILE))
        commands = [c for c in run.get("commands") or [] if isinstance(c, str) and c]
        return commands or ([run["command"]] if run.get("command") else [])

    def _eval_lines(self) -> list[str]:
        summary = _mapping(self.files.get(HELDOUT_SUMMARY))
        if not summary:
            return []
        base = f"embodied eval {self.run}" + options(
            ("split", summary.get("split")), ("episodes", summary.get("episodes")),
            ("seed", summary.get("seed")))
        lines = [base]
        for name, sweep in sorted(self.files.items()):
            if not name.startswith(SWEEP_PREFIX) or not isinstance(sweep, Mapping):
                continue
            factor = "strength" if sweep.get("factor") == "all" else sweep.get("factor")
            levels = ",".join(f"{float(s):g}" for s in sweep.get("strengths") or [])
            lines.append(base + options(("sweep", f"{factor}={levels}"),
                                        ("sweep-episodes", sweep.get("episodes"))))
        return lines

    def _use_lines(self) -> list[str]:
        # The recording keeps no record of its episode count; the command's defaults apply.
        lines = [self.video()] if self.media.get("video_mp4") else []
        index = _mapping(self.files.get(FAILURES_INDEX))
        if index:
            lines.append(f"embodied video {self.run}" + options(
                ("failures", index.get("requested")), ("episodes", index.get("max_episodes")),
                ("seed", index.get("seed"))))
        if self.files.get(rundir.PARITY_FILE):
            lines.append(self.export())
        deploy = _mapping(self.files.get(rundir.DEPLOY_REPORT_FILE))
        if deploy:
            lines.append(self.deploy() + options(("rate", deploy.get("rate_hz")),
                                                 ("duration", deploy.get("duration_s"))))
        return lines

    def _sweep_lines(self) -> list[str]:
        command = _mapping(self.files.get(SEEDS)).get("command")
        return [command] if isinstance(command, str) and command else []

    def _bench_lines(self) -> list[str]:
        f = {kind: _mapping(self.files.get(rundir.bench_file(kind))) for kind in BENCH_KINDS}
        lines = []
        if f["env"]:
            settings, oracle = _mapping(f["env"].get("settings")), _mapping(f["env"].get("oracle"))
            episodes = None
            if isinstance(oracle.get("episodes"), int):
                episodes = oracle["episodes"] + int(oracle.get("errors") or 0)
            lines.append(self.bench_cmd("env") + options(
                ("steps", settings.get("steps")), ("resets", settings.get("resets")),
                ("episodes", episodes)))
        if f["train"]:
            lines.append(self.bench_cmd("train"))
        if f["learn"]:
            budget = f["learn"].get("budget_s")
            minutes = budget / 60 if isinstance(budget, (int, float)) else None
            lines.append(self.bench_cmd("learn") + options(("minutes", minutes)))
        if f["infer"]:
            lines.append(self.bench_cmd("infer") + options(("steps", f["infer"].get("n"))))
        if f["loop"]:
            rows = [_mapping(r) for r in f["loop"].get("rows") or []]
            busy = any(r.get("load") not in (None, "idle") for r in rows)
            lines.append(self.bench_cmd("loop") + options(("ticks", f["loop"].get("ticks")))
                         + ("" if busy else " --no-busy"))
        if self.files.get(SWEEP_BENCH):
            lines.append(self.bench_cmd("sweep"))
        return lines


def options(*pairs: tuple[str, Any]) -> str:
    """` --flag value` for each pair whose value was recorded (numbers as `:g`, so 20.0 -> 20);
    a value that is absent leaves the flag out and the command's default applies."""
    out = ""
    for flag, value in pairs:
        if isinstance(value, bool) or value is None:
            continue
        text = f"{value:g}" if isinstance(value, (int, float)) else shlex.quote(str(value))
        out += f" --{flag} {text}"
    return out
