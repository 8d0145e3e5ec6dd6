"""Monitoring of the control loop: live Prometheus metrics and the timing statistics it reports.

Timing terms (all on `time.perf_counter_ns`):
- wake-up lateness: tick start minus the deadline it serves (start + k * period);
- period jitter: |interval between consecutive tick starts - period|;
- sense->act latency: camera frame stamp (taken after rendering) to `/cmd_vel` published,
  split into conversion (msg_to_image + frame stack), inference (ONNX Runtime) and publish
  (Twist build + publish); the remainder is the wait in the executor queue;
- deadline miss: a deadline that passed without a tick (skipped after an overrun) or a tick
  that found no new command since the previous tick's frame (the controller was too late).
Misses seen on the tick right after a simulator scene rebuild are reported apart
(`deadline_misses.sim_reset`) and not in `count` / `percent`, since a real robot never resets
its world; lateness and jitter samples keep every tick.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

STAGES = ("conversion", "inference", "publish", "total")
"""Stages of the sense->act latency, as the controller times them."""
LATENCY_BUCKETS_S = (50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6, 1e-3, 2e-3, 5e-3, 10e-3,
                     20e-3, 50e-3, 100e-3)
"""Prometheus histogram buckets (s): dense below 1 ms, where inference lives."""
HIST_EDGES_MS = np.geomspace(1e-3, 1e3, 91)
"""Log-spaced bins (ms) of the latency histograms kept in the report (15 per decade)."""
SAMPLES_KEPT = 1_000_000
"""Per-tick samples kept (the newest): about 5.5 h at 50 Hz, bounded memory after."""
METRICS_HOST = "127.0.0.1"

_NS_PER_MS = 1e6
_LATENCY_QS = {"p50": 50.0, "p99": 99.0, "p99_9": 99.9}
_TIMING_QS = {"p50": 50.0, "p99": 99.0}


def check_port(port: int) -> int:
    """`port` if it is a TCP port number (1-65535), else ValueError naming it."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"metrics port must be an integer 1-65535, got {port!r}")
    return port


class DeployMetrics:
    """Prometheus metrics of one control loop, in a registry of their own.

    Args:
        topics: the topics whose rejected messages are counted (each series exported as 0
            from the first scrape).
    """

    def __init__(self, topics: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self.ticks = Counter("embodied_deploy_ticks", "Control ticks run.",
                             registry=self.registry)
        self.deadline_misses = Counter(
            "embodied_deploy_deadline_misses",
            "Deadlines skipped, or ticks that found no new command since the last frame.",
            registry=self.registry)
        self.rejected = Counter("embodied_deploy_rejected_messages",
                                "Malformed messages rejected.", ["topic"],
                                registry=self.registry)
        self.episodes = Counter("embodied_deploy_episodes", "Episodes finished.",
                                registry=self.registry)
        self.successes = Counter("embodied_deploy_successes", "Episodes that reached the goal.",
                                 registry=self.registry)
        self.latency = Histogram("embodied_deploy_latency_seconds",
                                 "Camera frame to /cmd_vel latency by stage.", ["stage"],
                                 buckets=LATENCY_BUCKETS_S, registry=self.registry)
        for topic in topics:
            self.rejected.labels(topic=topic)
        self._latency = {stage: self.latency.labels(stage=stage) for stage in STAGES}

    def observe_latency(self, stage_ns: Mapping[str, int]) -> None:
        for stage, ns in stage_ns.items():
            self._latency[stage].observe(ns / 1e9)

    @contextlib.contextmanager
    def serving(self, port: int) -> Iterator[str]:
        """Serve /metrics on 127.0.0.1:`port` for the duration of the block; yields its URL
        once the port is open.

        Raises:
            ValueError: `port` is not 1-65535.
            OSError: the port cannot be opened (one line naming it).
        """
        check_port(port)
        try:
            server, thread = start_http_server(port, addr=METRICS_HOST, registry=self.registry)
        except OSError as err:
            raise OSError(f"metrics port {port} on {METRICS_HOST} cannot be opened "
                          f"({err.strerror or err}); pick another --metrics-port") from None
        try:
            yield f"http://{METRICS_HOST}:{port}/metrics"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=1.0)


@dataclasses.dataclass
class TickSample:
    """Timing of one control tick (integer ns)."""

    wake_ns: int
    """Callback start."""
    lateness_ns: int
    """Wake-up minus the deadline served."""
    skipped: int
    """Deadlines skipped just before this tick."""
    stale: bool
    """No new command arrived since the previous tick's frame."""
    after_reset: bool
    """The previous tick rebuilt the scene (simulator cost, reported apart)."""


def _percentiles_ms(samples_ns: Any, qs: dict[str, float]) -> dict[str, float | None]:
    arr = np.asarray(samples_ns, dtype=np.float64) / _NS_PER_MS
    if arr.size == 0:
        return {**dict.fromkeys(qs), "max": None}
    out = {name: float(np.percentile(arr, q)) for name, q in qs.items()}
    return {**out, "max": float(arr.max())}


def timing_report(ticks: Sequence[TickSample], latency_ns: Mapping[str, Sequence[int]],
                  period_ns: int) -> dict[str, Any]:
    """Latency percentiles per stage and histograms, period jitter, wake-up lateness and
    deadline misses (see the module docstring), from the measured ticks and frames."""
    wake = np.array([t.wake_ns for t in ticks], dtype=np.int64)
    jitter = np.abs(np.diff(wake) - period_ns)
    loop = [t for t in ticks if not t.after_reset]
    skipped = sum(t.skipped for t in loop)
    stale = sum(t.stale for t in loop)
    sim_reset = sum(t.skipped + t.stale for t in ticks if t.after_reset)
    deadlines = len(loop) + skipped
    misses = skipped + stale
    latency = {stage: _percentiles_ms(latency_ns[stage], _LATENCY_QS) for stage in STAGES}
    hist, _ = np.histogram(np.asarray(latency_ns["total"]) / _NS_PER_MS, HIST_EDGES_MS)
    hist_inf, _ = np.histogram(np.asarray(latency_ns["inference"]) / _NS_PER_MS, HIST_EDGES_MS)
    return {
        "ticks_measured": len(ticks),
        "latency_ms": latency,
        "latency_samples": len(latency_ns["total"]),
        "latency_histogram": {"edges_ms": [float(e) for e in HIST_EDGES_MS],
                              "total": hist.tolist(), "inference": hist_inf.tolist()},
        "period_jitter_ms": _percentiles_ms(jitter, _TIMING_QS),
        "wakeup_lateness_ms": _percentiles_ms([t.lateness_ns for t in ticks], _TIMING_QS),
        "deadline_misses": {
            "count": misses,
            "percent": 100.0 * misses / deadlines if deadlines else 0.0,
            "skipped": skipped,
            "stale_commands": stale,
            "deadlines": deadlines,
            "sim_reset": sim_reset,
        },
    }
