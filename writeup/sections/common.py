"""What the sections share: the artifact names, Markdown tables and images, the machine line
and the phrases that describe the run's method and camera."""

from __future__ import annotations

from collections.abc import Sequence

import rundir
from writeup.collect import BENCH_KINDS, HELDOUT_SUMMARY, SEEDS, SWEEP_BENCH
from writeup.doc import Doc, is_number

CONFIG = rundir.CONFIG_FILE
RUN = rundir.RUN_FILE
TRAIN = rundir.TRAIN_SUMMARY_FILE
CURVE = rundir.EVAL_DURING_TRAINING_FILE
HELDOUT = HELDOUT_SUMMARY
PARITY = rundir.PARITY_FILE
DEPLOY = rundir.DEPLOY_REPORT_FILE
B_ENV, B_TRAIN, B_LEARN, B_INFER, B_LOOP = (rundir.bench_file(kind) for kind in BENCH_KINDS)
B_SWEEP = SWEEP_BENCH
SWEEP = SEEDS
"""Short names of the artifacts the sections print from (keys of the collected `files`)."""


def degree_range(doc: Doc, file: str, *path) -> str | None:
    """A recorded (low, high) pair of degrees as "low–high°" (None unless it is two numbers)."""
    pair = doc.value(file, *path)
    if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(map(is_number, pair))):
        return None
    return f"{doc.num(file, *path, 0, kind='g')}–{doc.num(file, *path, 1, kind='g')}°"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown pipe table (cells must not contain `|`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def image(doc: Doc, name: str, alt: str) -> str | None:
    """`![alt](figures/file)` for a figure that was made, else None."""
    link = doc.data.get("figures", {}).get(name)
    return f"![{alt}]({link})" if link else None


def join(*parts: str | None) -> str:
    """The parts that are not empty, as Markdown blocks (a blank line between them)."""
    return "\n\n".join(p for p in parts if p)


def machine(doc: Doc, file: str) -> str:
    """One line naming the machine a benchmark ran on, from its `machine` record."""
    if doc.value(file, "machine") is None:
        return f"_Machine: not recorded in `{file}`._"
    parts = [doc.text(file, "machine", "cpu"),
             f"{doc.num(file, 'machine', 'cores', kind='int')} cores",
             f"1-minute load {doc.num(file, 'machine', 'load_avg_1m', kind='load')} "
             "when it started"]
    versions = [f"{name} {doc.text(file, 'machine', name)}"
                for name in ("python", "torch", "onnxruntime", "pybullet")
                if doc.value(file, "machine", name) is not None]
    return f"_Machine ({file}): " + ", ".join(parts + versions) + "._"


def method_text(doc: Doc) -> str:
    """How the run trained its policy, in words (from config.yaml, else train_summary.json)."""
    method = doc.value(CONFIG, "method") or doc.value(TRAIN, "method")
    if method == "ppo":
        return "pixel PPO (stable-baselines3) on the task reward"
    if method == "distill":
        teacher = doc.value(CONFIG, "distill", "teacher")
        who = ("a PPO teacher trained on privileged state" if teacher == "ppo"
               else "the privileged grid-planner oracle")
        text = f"teacher → student distillation (DAgger on the student's own visits, {who})"
        finetune = doc.value(CONFIG, "finetune", "timesteps")
        if is_number(finetune) and finetune > 0:
            text += (f", then {doc.num(CONFIG, 'finetune', 'timesteps', kind='int')} "
                     "steps of PPO fine-tuning")
        return text
    return "the method recorded in its config"


def resolution(doc: Doc) -> str | None:
    """`W×H` of the camera the run trained with, or None where config.yaml does not say."""
    if not is_number(doc.value(CONFIG, "env", "observation", "width")):
        return None
    return (f"{doc.num(CONFIG, 'env', 'observation', 'width', kind='int')}×"
            f"{doc.num(CONFIG, 'env', 'observation', 'height', kind='int')}")
