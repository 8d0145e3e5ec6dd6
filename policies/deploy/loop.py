"""The deployed policy in a fixed-rate ROS 2-style control loop, with timing, bag and metrics.

`run_deploy` makes sure the ONNX model is the checkpoint's (`ensure_onnx`: the SHA-256 of the
checkpoint file stored in the model must match, else it is exported afresh), puts a `SimNode`
and a `PolicyNode` (see `policies.deploy.nodes`) on one in-process `Context`, runs them with
one `SingleThreadedExecutor` for the given duration and returns the timing report (see
`policies.deploy.metrics` for its terms). The first `warmup_ticks` ticks (caches, allocator,
first inference) are left out of every statistic; counts of ticks, messages and episodes
include them.

`rt_priority` runs the executor thread under SCHED_FIFO (Linux, needs CAP_SYS_NICE), the usual
ROS 2 real-time setting: wake-ups then no longer queue behind other busy processes.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import onnx

import rundir
from policies.checkpoint import file_sha256, resolve_checkpoint
from policies.deploy.bag import BagRecorder
from policies.deploy.metrics import DeployMetrics, check_port, timing_report
from policies.deploy.node import Context, Node, SingleThreadedExecutor, now_ns
from policies.deploy.nodes import TOPIC_CMD, TOPIC_IMAGE, TOPICS, BagNode, PolicyNode, SimNode
from policies.export import CHECKPOINT_SHA_KEY, OnnxPolicy, default_export_path, export_policy

MACHINE_PACKAGES = ("onnxruntime", "torch")
"""Versions recorded with every deploy report."""


def onnx_checkpoint_sha256(path: str | os.PathLike) -> str | None:
    """The checkpoint SHA-256 an exported model records; None if it has none or is unreadable."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a truncated or foreign file: treated as stale and exported afresh
        return None
    props = {entry.key: entry.value for entry in model.metadata_props}
    return props.get(CHECKPOINT_SHA_KEY)


def ensure_onnx(target: str | os.PathLike) -> tuple[Path, str, dict[str, Any] | None]:
    """The ONNX model of `target`: the default `policy.onnx` if it was exported from these very
    checkpoint bytes (same SHA-256; file times are not trusted), else a fresh export.

    Returns:
        (path, the checkpoint's SHA-256, the export report or None when the model was reused).

    Raises:
        CheckpointError: no readable checkpoint at `target`.
    """
    checkpoint = resolve_checkpoint(target)
    digest = file_sha256(checkpoint)
    path = default_export_path(target, "onnx")
    if path.is_file() and onnx_checkpoint_sha256(path) == digest:
        return path, digest, None
    report = export_policy(checkpoint, "onnx", out=path)
    return path, report["checkpoint_sha256"], report


@contextlib.contextmanager
def realtime_priority(priority: int | None) -> Iterator[None]:
    """Run the block with this thread under SCHED_FIFO at `priority` (1-99); None: unchanged.

    Raises:
        PermissionError: the process lacks CAP_SYS_NICE.
        OSError: not Linux.
    """
    if priority is None:
        yield
        return
    if not hasattr(os, "sched_setscheduler"):
        raise OSError("rt_priority needs Linux (SCHED_FIFO); leave it unset elsewhere")
    if not 1 <= priority <= 99:
        raise ValueError(f"rt_priority must be 1-99, got {priority}")
    old_policy, old_param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        raise PermissionError(
            "rt_priority needs CAP_SYS_NICE: run as root, `docker run --cap-add SYS_NICE`, or "
            "raise rtprio in /etc/security/limits.conf; or leave rt_priority unset") from None
    try:
        yield
    finally:
        os.sched_setscheduler(0, old_policy, old_param)


def _check_args(rate: float, duration: float, warmup_ticks: int, inject_malformed_every: int,
                record: str | os.PathLike | None, metrics_port: int | None) -> None:
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a finite number of Hz > 0, got {rate}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration}")
    if warmup_ticks < 0 or inject_malformed_every < 0:
        raise ValueError("warmup_ticks and inject_malformed_every must be >= 0")
    if metrics_port is not None:
        check_port(metrics_port)
    if record is not None and Path(record).exists():
        raise FileExistsError(f"{record} exists already; pick a new bag path or delete it")


def run_deploy(target: str | os.PathLike, rate: float = 20.0, duration: float = 60.0,
               record: str | os.PathLike | None = None, metrics_port: int | None = None,
               warmup_ticks: int = 20, inject_malformed_every: int = 0,
               rt_priority: int | None = None,
               on_metrics: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the exported policy against the simulated robot in a fixed-rate loop.

    Args:
        target: checkpoint file or run directory; its `policy.onnx` is reused when it records
            the checkpoint's SHA-256, else exported first (with a parity check).
        rate: control rate, Hz.
        duration: wall-clock seconds to run (Ctrl-C ends the run early, keeping the results).
        record: a new rosbag2 (MCAP) directory recording every topic of `TOPICS`.
        metrics_port: serve Prometheus metrics on 127.0.0.1:PORT (1-65535) while running; it
            is opened first, so a port in use fails before any work.
        warmup_ticks: first ticks left out of the timing statistics.
        inject_malformed_every: publish a malformed Image every N ticks (0: never) to
            exercise rejection; the loop carries on.
        rt_priority: run the loop under SCHED_FIFO at this priority (1-99); None: the normal
            scheduler.
        on_metrics: called with the metrics URL once the port is open (e.g. to print it).

    Returns:
        A JSON-ready report: the checkpoint and its SHA-256 (the weights the model runs),
        latency percentiles (ms) per stage, period jitter, wake-up lateness, deadline misses,
        tick / message / rejection counts, episodes, successes and the machine it ran on.

    Raises:
        CheckpointError: no readable checkpoint at `target`.
        FileExistsError: `record` exists already.
        OSError: the metrics port cannot be opened (the message names it).
    """
    _check_args(rate, duration, warmup_ticks, inject_malformed_every, record, metrics_port)
    interrupted = False
    bag_counts = None
    with contextlib.ExitStack() as stack:
        metrics = None
        if metrics_port is not None:
            metrics = DeployMetrics((TOPIC_IMAGE, TOPIC_CMD))
            url = stack.enter_context(metrics.serving(metrics_port))
            if on_metrics is not None:
                on_metrics(url)
        model_path, checkpoint_sha256, export_report = ensure_onnx(target)
        policy = OnnxPolicy(model_path)
        context, executor = Context(), SingleThreadedExecutor()
        sim = SimNode(context, policy.meta.env_config(), policy.continuous, rate, warmup_ticks,
                      inject_malformed_every, metrics)
        stack.callback(sim.close)
        controller = PolicyNode(context, policy, warmup_ticks, metrics)
        nodes: list[Node] = [sim, controller]
        machine = rundir.machine_info(MACHINE_PACKAGES)
        if record is not None:
            bag = stack.enter_context(BagRecorder(record, TOPICS))
            nodes.append(BagNode(context, bag))
        for node in nodes:
            executor.add_node(node)
        # Entered last, so the metrics server thread keeps the normal scheduler.
        stack.enter_context(realtime_priority(rt_priority))
        sim.timer.reset()  # the deadline grid starts now, after all the setup
        start = now_ns()
        try:
            executor.spin_until(start + round(duration * 1e9))
        except KeyboardInterrupt:
            interrupted = True
        elapsed_s = (now_ns() - start) / 1e9
        sim.timer.cancel()
        _drain(executor, nodes)
        if record is not None:
            bag_counts = dict(bag.counts)
    subs = [s for node in nodes[:2] for s in node.subscriptions]
    rejected_by_topic = {s.topic_name: s.stats.rejected for s in subs}
    return {
        "checkpoint": str(resolve_checkpoint(target)),
        "checkpoint_sha256": checkpoint_sha256,
        "model": str(model_path),
        "model_reused": export_report is None,
        "export_parity": None if export_report is None else {
            k: export_report[k] for k in ("max_abs_diff", "action_agreement", "n_obs")},
        "continuous": policy.continuous,
        "frame_stack": policy.meta.frame_stack,
        "rate_hz": float(rate),
        "rt_priority": rt_priority,
        "period_ms": 1e3 / rate,
        "duration_s": duration,
        "elapsed_s": elapsed_s,
        "interrupted": interrupted,
        "ticks": sim.ticks,
        "warmup_ticks_excluded": min(warmup_ticks, sim.ticks),
        **timing_report(list(sim.samples), controller.samples, sim.timer.timer_period_ns),
        "messages": {**sim.published, TOPIC_CMD: controller.published},
        "malformed_injected": sim.malformed_injected,
        "rejected_messages": sum(rejected_by_topic.values()),
        "rejected_by_topic": rejected_by_topic,
        "dropped_messages": sum(s.stats.dropped for s in subs),
        "episodes": sim.episodes,
        "successes": sim.successes,
        "success_rate": sim.successes / sim.episodes if sim.episodes else None,
        "record": None if record is None else str(record),
        "bag_counts": bag_counts,
        "metrics_port": metrics_port,
        "machine": machine,
        "note": (f"timing statistics exclude the first {warmup_ticks} ticks (warm-up); "
                 "counts include them"),
    }


def _drain(executor: SingleThreadedExecutor, nodes: list[Node], max_passes: int = 10) -> None:
    """Deliver what is still queued (the last frame's command, the bag's copies)."""
    for _ in range(max_passes):
        if not any(s.pending for node in nodes for s in node.subscriptions):
            return
        executor.spin_once(timeout_sec=0.0)
