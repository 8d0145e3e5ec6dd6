"""Summary: what was built and the result, in three sentences with the headline numbers."""

from __future__ import annotations

from writeup.commands import Commands
from writeup.doc import Doc, is_number
from writeup.sections.common import (
    B_INFER,
    B_LOOP,
    DEPLOY,
    HELDOUT,
    TRAIN,
    join,
    method_text,
    resolution,
)


def summary(doc: Doc, cmd: Commands) -> str:
    """What was built and the result, in three sentences with the headline numbers."""
    return join("## Summary", " ".join([_built(doc, cmd), _result(doc, cmd),
                                         _deployed(doc, cmd)]))


def _built(doc: Doc, cmd: Commands) -> str:
    res = resolution(doc)
    camera = f"its onboard {res} RGB camera" if res else "its onboard RGB camera"
    lead = f"A small wheeled robot in PyBullet learns to reach a goal beacon from {camera} alone"
    if not doc.has(TRAIN):
        return f"{lead}; this run has no training summary yet: run `{cmd.train()}` to produce it."
    return (f"{lead}; this run trained it by {method_text(doc)} for "
            f"{doc.num(TRAIN, 'timesteps', kind='int')} env steps in "
            f"{doc.num(TRAIN, 'wall_clock_s', kind='s')} s of wall-clock on "
            f"{doc.num(TRAIN, 'n_envs', kind='int')} envs "
            f"({doc.num(TRAIN, 'steps_per_s', kind='per_s')} steps/s).")


def _result(doc: Doc, cmd: Commands) -> str:
    if not doc.has(HELDOUT) or doc.value(HELDOUT, "policy") is None:
        return ("The held-out evaluation is missing: run "
                f"`{cmd.eval()}` to score the policy beside the oracle and random baselines.")
    text = (f"On the held-out split ({doc.num(HELDOUT, 'episodes', kind='int')} episodes "
            "with colours, textures and layouts training never saw) the policy reached the "
            "goal at a rate "
            f"of {doc.ci(HELDOUT, 'policy', 'success_rate')} with SPL "
            f"{doc.ci(HELDOUT, 'policy', 'spl')} (95 % intervals)")
    baselines = []
    for name, label in (("oracle", "the privileged oracle"), ("random", "random actions")):
        if doc.value(HELDOUT, name) is not None:
            baselines.append(f"{doc.num(HELDOUT, name, 'success_rate')} / SPL "
                             f"{doc.num(HELDOUT, name, 'spl')} for {label}")
    if baselines:
        text += ", against " + " and ".join(baselines)
    if is_number(doc.value(HELDOUT, "spl_vs_oracle")):
        text += (f"; its SPL is {doc.num(HELDOUT, 'spl_vs_oracle', kind='ratio')} of the "
                 "oracle's")
    return text + "."


def _deployed(doc: Doc, cmd: Commands) -> str:
    parts = []
    if is_number(doc.value(B_INFER, "backends", "onnxruntime", "p50_ms")):
        parts.append("answers a camera frame in "
                     f"{doc.num(B_INFER, 'backends', 'onnxruntime', 'p50_ms', kind='ms')} ms "
                     f"(p50; p99 {doc.num(B_INFER, 'backends', 'onnxruntime', 'p99_ms', kind='ms')}"
                     " ms) on ONNX Runtime")
    row = _idle_loop_row(doc)
    if row is not None:
        def n(key: str, kind: str) -> str:
            return doc.num(B_LOOP, "rows", row, key, kind=kind)
        parts.append(f"ran the ROS 2-style control loop at {n('rate_hz', 'g')} Hz with "
                     f"{n('deadline_misses', 'int')} deadline misses in {n('ticks', 'int')} "
                     f"ticks and period jitter p99 {n('jitter_p99_ms', 'ms')} ms on an idle "
                     "machine")
    elif is_number(doc.value(DEPLOY, "latency_ms", "total", "p99")):
        parts.append(f"ran this run's deploy loop at {doc.num(DEPLOY, 'rate_hz', kind='g')} Hz "
                     "with sense→act p99 "
                     f"{doc.num(DEPLOY, 'latency_ms', 'total', 'p99', kind='ms')} ms and "
                     f"{doc.num(DEPLOY, 'deadline_misses', 'count', kind='int')} deadline misses "
                     f"in {doc.num(DEPLOY, 'ticks_measured', kind='int')} ticks")
    if not parts:
        return ("The deployment figures are missing: run "
                f"`{cmd.bench_cmd('infer')}` and `{cmd.bench_cmd('loop')}` to measure "
                "inference latency and control-loop timing.")
    return "Exported to ONNX, the policy " + " and ".join(parts) + "."


def _idle_loop_row(doc: Doc) -> int | None:
    rows = doc.records(B_LOOP, "rows")
    idle = [i for i, r in rows if r.get("load") == "idle"]
    return idle[0] if idle else (rows[0][0] if rows else None)
