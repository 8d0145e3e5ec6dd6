"""The deployed policy in a fixed-rate ROS 2-style control loop, with timing, bag and metrics.

Two nodes on one in-process `Context`, run by one `SingleThreadedExecutor`:

    SimNode  --/camera/image_raw (sensor_msgs/Image rgb8)-->  PolicyNode
    SimNode  --/odom (nav_msgs/Odometry)-->                   (bag, monitoring)
    SimNode  <--/cmd_vel (geometry_msgs/Twist)--              PolicyNode

`SimNode` stands in for the robot: its timer at `rate` Hz applies the latest `/cmd_vel`, steps
the env one control step, and publishes the camera frame and odometry. `PolicyNode` turns each
frame into a command with the exported ONNX model. A command computed from tick k's frame is
applied at tick k + 1, as on a robot whose base controller reads the newest command each cycle.

Timing terms (all on `time.perf_counter_ns`):
- wake-up lateness: tick start minus the deadline it serves (start + k * period);
- period jitter: |interval between consecutive tick starts - period|;
- sense->act latency: camera frame stamp (taken after rendering) to `/cmd_vel` published,
  split into conversion (msg_to_image + frame stack), inference (ONNX Runtime) and publish
  (Twist build + publish); the remainder is the wait in the executor queue;
- deadline miss: a deadline that passed without a tick (skipped after an overrun) or a tick
  that found no new command since the previous tick's frame (the controller was too late).
The first `warmup_ticks` ticks (caches, allocator, first inference) are left out of every
statistic; counts of ticks, messages and episodes include them.

Episode ends are the simulator's business, not the controller's: the tick after the last step
rebuilds the scene (~14 ms at 64x64, most of a 50 Hz period) and publishes the new episode's
first frame without stepping. Misses seen on the tick right after such a rebuild are reported
apart (`deadline_misses.sim_reset`) and not in `count` / `percent`, since a real robot never
resets its world; lateness and jitter samples keep every tick.

`rt_priority` runs the executor thread under SCHED_FIFO (Linux, needs CAP_SYS_NICE), the usual
ROS 2 real-time setting: wake-ups then no longer queue behind other busy processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import math
import os
import platform
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from envs.config import EnvConfig
from envs.nav_env import DISCRETE_ACTIONS, CameraNavEnv
from policies.bag import BagRecorder
from policies.checkpoint import resolve_checkpoint
from policies.export import (
    OnnxPolicy,
    default_export_path,
    env_config,
    export_policy,
    write_json_atomic,
)
from policies.node import Context, Node, QoSProfile, SingleThreadedExecutor, Timer, now_ns
from policies.ros import (
    Image,
    MessageError,
    Odometry,
    Twist,
    action_to_twist,
    image_to_msg,
    msg_to_image,
    pose_to_odometry,
    stamp_to_ns,
    twist_to_action,
)

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_ODOM = "/odom"
TOPIC_CMD = "/cmd_vel"
TOPICS = {
    TOPIC_IMAGE: Image.__msgtype__,
    TOPIC_CMD: Twist.__msgtype__,
    TOPIC_ODOM: Odometry.__msgtype__,
}
"""Topic -> message type of everything the loop publishes (and a bag records)."""

SENSOR_QOS = QoSProfile(depth=5)
"""Camera subscription: keep-last 5, the depth of rclpy's `qos_profile_sensor_data`."""
COMMAND_QOS = QoSProfile(depth=1)
"""Velocity commands: only the newest matters."""
RECORD_QOS = QoSProfile(depth=100)
"""The bag's subscriptions: deep enough never to drop within one executor pass."""

DEPLOY_SEED = 8_000_000
"""Reset seed of the first deployment episode (episode i uses DEPLOY_SEED + i)."""
STAGES = ("conversion", "inference", "publish", "total")
LATENCY_BUCKETS_S = (50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6, 1e-3, 2e-3, 5e-3, 10e-3,
                     20e-3, 50e-3, 100e-3)
"""Prometheus histogram buckets (s): dense below 1 ms, where inference lives."""
HIST_EDGES_MS = np.geomspace(1e-3, 1e3, 91)
"""Log-spaced bins (ms) of the latency histograms kept in the report (15 per decade)."""
SAMPLES_KEPT = 1_000_000
"""Per-tick samples kept (the newest): about 5.5 h at 50 Hz, bounded memory after."""

_NS_PER_MS = 1e6


# ---------------------------------------------------------------------------- command mapping


def twist_to_env_action(v_mps: float, w_rps: float, cfg: EnvConfig,
                        continuous: bool) -> int | np.ndarray:
    """A velocity command -> the env action that drives closest to it.

    Args:
        v_mps, w_rps: forward speed (m/s) and yaw rate (rad/s).
        cfg: the env config (top speeds).
        continuous: the env's action type.

    Returns:
        For discrete envs the index of the `DISCRETE_ACTIONS` row nearest to the command as
        fractions of the top speeds; for continuous envs those fractions clipped to [-1, 1],
        a (2,) float32 array.
    """
    frac = np.array([v_mps / cfg.max_linear_mps, w_rps / cfg.max_angular_rps])
    if continuous:
        return np.clip(frac, -1.0, 1.0).astype(np.float32)
    return int(np.argmin(np.sum((DISCRETE_ACTIONS - frac) ** 2, axis=1)))


def env_action_to_twist(action: int | np.ndarray, cfg: EnvConfig, continuous: bool) -> Twist:
    """An env action (discrete index or (2,) fractions) -> the Twist it stands for."""
    frac = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0) if continuous \
        else DISCRETE_ACTIONS[int(action)]
    return action_to_twist(frac[0] * cfg.max_linear_mps, frac[1] * cfg.max_angular_rps)


# ---------------------------------------------------------------------------- monitoring


class DeployMetrics:
    """Prometheus metrics of one control loop, in a registry of their own."""

    def __init__(self) -> None:
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
        # Children made up front, so every series is exported (as 0) from the first scrape.
        for topic in (TOPIC_IMAGE, TOPIC_CMD):
            self.rejected.labels(topic=topic)
        self._latency = {stage: self.latency.labels(stage=stage) for stage in STAGES}

    def observe_latency(self, stage_ns: dict[str, int]) -> None:
        for stage, ns in stage_ns.items():
            self._latency[stage].observe(ns / 1e9)

    @contextlib.contextmanager
    def serving(self, port: int):
        """Serve /metrics on 127.0.0.1:`port` for the duration of the block."""
        server, thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=1.0)


# ---------------------------------------------------------------------------- the robot


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


class SimNode(Node):
    """The simulated robot: a CameraNavEnv stepped by a timer, camera and odometry out.

    Args:
        context: the bus shared with the controller.
        cfg: env config (from the policy's checkpoint metadata).
        continuous: whether the env takes continuous actions.
        rate: timer rate, Hz. The env advances one control step (1 / cfg.control_hz of
            simulated time) per tick whatever the rate.
        warmup_ticks: ticks left out of the timing samples.
        inject_malformed_every: every N ticks also publish a malformed Image (wrong `step`)
            before the real frame; 0 never.
        metrics: live Prometheus metrics, or None.
        seed: reset seed of the first episode.
    """

    def __init__(self, context: Context, cfg: EnvConfig, continuous: bool, rate: float,
                 warmup_ticks: int = 0, inject_malformed_every: int = 0,
                 metrics: DeployMetrics | None = None, seed: int = DEPLOY_SEED) -> None:
        super().__init__("sim", context)
        obs = cfg.observation
        if not obs.camera or obs.depth or obs.segmentation or obs.lidar or obs.proprio \
                or obs.privileged:
            raise ValueError("deployment streams the RGB camera alone as rgb8; use a policy "
                             "trained with observation.camera only (no depth, segmentation or "
                             "state vectors)")
        self.cfg, self.continuous = cfg, continuous
        self.env = CameraNavEnv(cfg, continuous=continuous)
        self.warmup_ticks = warmup_ticks
        self.inject_malformed_every = inject_malformed_every
        self.metrics = metrics
        self.seed = seed
        self.image_pub = self.create_publisher(Image, TOPIC_IMAGE, SENSOR_QOS)
        self.odom_pub = self.create_publisher(Odometry, TOPIC_ODOM, SENSOR_QOS)
        self.cmd_sub = self.create_subscription(Twist, TOPIC_CMD, self._on_cmd, COMMAND_QOS)
        self.timer: Timer = self.create_timer(1.0 / rate, self._on_tick)
        self.published = dict.fromkeys(TOPICS, 0)
        del self.published[TOPIC_CMD]
        self.ticks = self.episodes = self.successes = self.malformed_injected = 0
        self.samples: deque[TickSample] = deque(maxlen=SAMPLES_KEPT)
        self._reset(seed)
        self._reset_due = False
        self._reset_last_tick = False
        self._action: int | np.ndarray | None = None
        self._commands = 0
        self._commands_at_frame = 0
        self._missed_seen = 0

    def _on_cmd(self, msg: Twist) -> None:
        try:
            v, w = twist_to_action(msg)
        except MessageError:
            if self.metrics is not None:
                self.metrics.rejected.labels(topic=TOPIC_CMD).inc()
            raise
        self._action = twist_to_env_action(v, w, self.cfg, self.continuous)
        self._commands += 1

    def _on_tick(self) -> None:
        wake = now_ns()
        skipped = self.timer.stats.missed - self._missed_seen
        self._missed_seen = self.timer.stats.missed
        stale = self.ticks > 0 and self._commands == self._commands_at_frame
        after_reset = self._reset_last_tick
        if self.ticks >= self.warmup_ticks:
            self.samples.append(TickSample(wake, self.timer.stats.lateness_ns[-1], skipped,
                                           stale, after_reset))
        self.ticks += 1
        if self.metrics is not None:
            self.metrics.ticks.inc()
            if (skipped or stale) and not after_reset:
                self.metrics.deadline_misses.inc(skipped + int(stale))
        self._reset_last_tick = self._reset_due
        if self._reset_due:
            # Its own tick: a rebuild plus a step would overrun a 50 Hz period.
            self._reset(self.seed + self.episodes)
            self._reset_due = False
        elif self._action is not None:
            # Until the first command the robot waits; then it holds the newest command.
            self._step(self._action)
        self._publish()

    def _reset(self, seed: int) -> None:
        self._obs, info = self.env.reset(seed=seed)
        self._pose = np.asarray(info["pose"], dtype=np.float64)
        self._velocity = (0.0, 0.0)

    def _step(self, action: int | np.ndarray) -> None:
        obs, _, terminated, truncated, info = self.env.step(action)
        pose = np.asarray(info["pose"], dtype=np.float64)
        self._velocity = _body_velocity(self._pose, pose, 1.0 / self.cfg.control_hz)
        self._pose, self._obs = pose, obs
        if terminated or truncated:
            # The final frame still goes out; the next tick rebuilds the scene.
            self._reset_due = True
            self.episodes += 1
            self.successes += int(info["success"])
            if self.metrics is not None:
                self.metrics.episodes.inc()
                self.metrics.successes.inc(int(info["success"]))

    def _publish(self) -> None:
        stamp_ns = self.get_clock().now().nanoseconds
        msg = image_to_msg(self._obs, stamp_ns, "camera_optical")
        every = self.inject_malformed_every
        if every and self.ticks % every == 0:
            # A broken driver frame: the row stride disagrees with width * 3.
            self.image_pub.publish(dataclasses.replace(msg, step=msg.step + 1))
            self.malformed_injected += 1
            self.published[TOPIC_IMAGE] += 1
        self.image_pub.publish(msg)
        x, y, yaw = self._pose
        self.odom_pub.publish(pose_to_odometry(x, y, yaw, *self._velocity, stamp_ns))
        self.published[TOPIC_IMAGE] += 1
        self.published[TOPIC_ODOM] += 1
        self._commands_at_frame = self._commands

    def close(self) -> None:
        self.env.close()


def _body_velocity(before: np.ndarray, after: np.ndarray, dt_s: float) -> tuple[float, float]:
    """Forward speed (m/s) and yaw rate (rad/s) from two (x, y, yaw) poses dt_s apart."""
    dx, dy = after[:2] - before[:2]
    dyaw = math.remainder(after[2] - before[2], 2 * math.pi)
    heading = before[2] + 0.5 * dyaw  # mid-step heading; averaging raw yaws breaks at +-pi
    return (dx * math.cos(heading) + dy * math.sin(heading)) / dt_s, dyaw / dt_s


# ---------------------------------------------------------------------------- the controller


class PolicyNode(Node):
    """Camera frame in, velocity command out, through the exported ONNX policy.

    With frame stacking (k > 1 in the checkpoint) it keeps the newest k frames and fills the
    stack with the first frame it sees. It cannot see episode resets, so just after one the
    stack briefly mixes episodes, unlike the training wrapper which refills it.

    Samples (after `warmup` frames): per frame the ns spent in conversion, inference, publish
    and the total from the frame's stamp to the command published.
    """

    def __init__(self, context: Context, policy: OnnxPolicy, warmup: int = 0,
                 metrics: DeployMetrics | None = None) -> None:
        super().__init__("policy", context)
        self.policy = policy
        self.cfg = env_config(policy.meta)
        self.frame_stack = int(policy.meta.get("frame_stack", 1))
        h, w, c = policy.image_shape
        self.frame_shape = (h, w, c // self.frame_stack)
        self.warmup = warmup
        self.metrics = metrics
        self.cmd_pub = self.create_publisher(Twist, TOPIC_CMD, COMMAND_QOS)
        self.image_sub = self.create_subscription(Image, TOPIC_IMAGE, self._on_image, SENSOR_QOS)
        self.published = 0
        self.frames = 0
        self.samples: dict[str, deque[int]] = {s: deque(maxlen=SAMPLES_KEPT) for s in STAGES}
        self._stack: deque[np.ndarray] = deque(maxlen=self.frame_stack)

    def _convert(self, msg: Image) -> np.ndarray:
        """Image -> uint8 (1, H, W, C) batch; MessageError for anything the policy cannot use."""
        if msg.encoding != "rgb8":
            raise MessageError(f"Image.encoding is {msg.encoding!r}; the policy needs 'rgb8'")
        image = msg_to_image(msg)
        if image.shape != self.frame_shape:
            raise MessageError(f"Image is {image.shape}; the policy needs {self.frame_shape} "
                               "(resize the camera stream to the training resolution)")
        if self.frame_stack == 1:
            return image[None]
        if not self._stack:
            self._stack.extend([image] * self.frame_stack)
        self._stack.append(image)
        return np.concatenate(self._stack, axis=2)[None]

    def _on_image(self, msg: Image) -> None:
        t0 = now_ns()
        try:
            batch = self._convert(msg)
        except MessageError:
            if self.metrics is not None:
                self.metrics.rejected.labels(topic=TOPIC_IMAGE).inc()
            raise
        t1 = now_ns()
        out = self.policy.forward(batch)[0]
        action = out if self.policy.continuous else int(np.argmax(out))
        t2 = now_ns()
        self.cmd_pub.publish(env_action_to_twist(action, self.cfg, self.policy.continuous))
        t3 = now_ns()
        self.published += 1
        stage_ns = {"conversion": t1 - t0, "inference": t2 - t1, "publish": t3 - t2,
                    "total": t3 - stamp_to_ns(msg.header.stamp)}
        if self.frames >= self.warmup:
            for stage, ns in stage_ns.items():
                self.samples[stage].append(ns)
        self.frames += 1
        if self.metrics is not None:
            self.metrics.observe_latency(stage_ns)


class BagNode(Node):
    """Records every message on `TOPICS` into an open `BagRecorder` (receive time, wall clock)."""

    def __init__(self, context: Context, bag: BagRecorder) -> None:
        super().__init__("bag_recorder", context)
        self.bag = bag
        types = {TOPIC_IMAGE: Image, TOPIC_CMD: Twist, TOPIC_ODOM: Odometry}
        for topic, msg_type in types.items():
            self.create_subscription(msg_type, topic, self._writer(topic), RECORD_QOS)

    def _writer(self, topic: str) -> Callable[[Any], None]:
        def write(msg: Any) -> None:
            self.bag.write(topic, msg, time.time_ns())
        return write


# ---------------------------------------------------------------------------- statistics


def _percentiles_ms(samples_ns: Any, qs: dict[str, float]) -> dict[str, float | None]:
    arr = np.asarray(samples_ns, dtype=np.float64) / _NS_PER_MS
    if arr.size == 0:
        return {**dict.fromkeys(qs), "max": None}
    out = {name: float(np.percentile(arr, q)) for name, q in qs.items()}
    return {**out, "max": float(arr.max())}


_LATENCY_QS = {"p50": 50.0, "p99": 99.0, "p99_9": 99.9}
_TIMING_QS = {"p50": 50.0, "p99": 99.0}


def machine_info(packages: tuple[str, ...] = ("onnxruntime", "torch")) -> dict[str, Any]:
    """CPU model, cores, 1-minute load (other work running) and the versions of `packages`.

    Every benchmark stamps its JSON with this, so the writeup can name the machine.
    """
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    versions = {name: importlib.metadata.version(name) for name in packages}
    return {"cpu": model, "cores": os.cpu_count(), "load_avg_1m": load,
            "python": platform.python_version(), "platform": platform.platform(), **versions}


def _timing_report(sim: SimNode, policy: PolicyNode, period_ns: int) -> dict[str, Any]:
    ticks = list(sim.samples)
    wake = np.array([t.wake_ns for t in ticks], dtype=np.int64)
    jitter = np.abs(np.diff(wake) - period_ns)
    loop = [t for t in ticks if not t.after_reset]
    skipped = sum(t.skipped for t in loop)
    stale = sum(t.stale for t in loop)
    sim_reset = sum(t.skipped + t.stale for t in ticks if t.after_reset)
    deadlines = len(loop) + skipped
    misses = skipped + stale
    latency = {stage: _percentiles_ms(policy.samples[stage], _LATENCY_QS) for stage in STAGES}
    hist, _ = np.histogram(np.asarray(policy.samples["total"]) / _NS_PER_MS, HIST_EDGES_MS)
    hist_inf, _ = np.histogram(np.asarray(policy.samples["inference"]) / _NS_PER_MS,
                               HIST_EDGES_MS)
    return {
        "ticks_measured": len(ticks),
        "latency_ms": latency,
        "latency_samples": len(policy.samples["total"]),
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


# ---------------------------------------------------------------------------- the run


def ensure_onnx(target: str | os.PathLike) -> tuple[Path, dict[str, Any] | None]:
    """The ONNX model for `target`: the default `policy.onnx` if newer than the checkpoint,
    else a fresh export.

    Returns:
        (path, the export report, or None when an existing model was reused).

    Raises:
        CheckpointError: no checkpoint at `target`.
    """
    checkpoint = resolve_checkpoint(target)
    path = default_export_path(target, "onnx")
    if path.is_file() and path.stat().st_mtime >= checkpoint.stat().st_mtime:
        return path, None
    return path, export_policy(target, "onnx", out=path)


@contextlib.contextmanager
def realtime_priority(priority: int | None):
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


def run_deploy(target: str | os.PathLike, rate: float = 20.0, duration: float = 60.0,
               record: str | os.PathLike | None = None, metrics_port: int | None = None,
               warmup_ticks: int = 20, inject_malformed_every: int = 0,
               rt_priority: int | None = None) -> dict[str, Any]:
    """Run the exported policy against the simulated robot in a fixed-rate loop.

    Args:
        target: checkpoint file or run directory; its `policy.onnx` is reused when newer than
            the checkpoint, else exported first (with a parity check).
        rate: control rate, Hz.
        duration: wall-clock seconds to run (Ctrl-C ends the run early, keeping the results).
        record: a new rosbag2 (MCAP) directory recording /camera/image_raw, /cmd_vel and /odom.
        metrics_port: serve Prometheus metrics on 127.0.0.1:PORT while running.
        warmup_ticks: first ticks left out of the timing statistics.
        inject_malformed_every: publish a malformed Image every N ticks (0: never) to
            exercise rejection; the loop carries on.
        rt_priority: run the loop under SCHED_FIFO at this priority (1-99); None: the normal
            scheduler.

    Returns:
        A JSON-ready report: latency percentiles (ms) per stage, period jitter, wake-up
        lateness, deadline misses, tick / message / rejection counts, episodes, successes and
        the machine it ran on (see the module docstring for the definitions).

    Raises:
        CheckpointError: no checkpoint at `target`.
        FileExistsError: `record` exists already.
    """
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a finite number of Hz > 0, got {rate}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration}")
    if warmup_ticks < 0 or inject_malformed_every < 0:
        raise ValueError("warmup_ticks and inject_malformed_every must be >= 0")
    if record is not None and Path(record).exists():
        raise FileExistsError(f"{record} exists already; pick a new bag path or delete it")
    model_path, export_report = ensure_onnx(target)
    policy = OnnxPolicy(model_path)
    context, executor = Context(), SingleThreadedExecutor()
    metrics = DeployMetrics() if metrics_port is not None else None
    sim = SimNode(context, env_config(policy.meta), policy.continuous, rate, warmup_ticks,
                  inject_malformed_every, metrics)
    controller = PolicyNode(context, policy, warmup_ticks, metrics)
    nodes: list[Node] = [sim, controller]
    machine = machine_info()
    interrupted = False
    bag_counts = None
    with contextlib.ExitStack() as stack:
        stack.callback(sim.close)
        if record is not None:
            bag = stack.enter_context(BagRecorder(record, TOPICS))
            nodes.append(BagNode(context, bag))
        if metrics is not None:
            stack.enter_context(metrics.serving(metrics_port))
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
        "model": str(model_path),
        "model_reused": export_report is None,
        "export_parity": None if export_report is None else {
            k: export_report[k] for k in ("max_abs_diff", "action_agreement", "n_obs")},
        "continuous": policy.continuous,
        "rate_hz": float(rate),
        "rt_priority": rt_priority,
        "period_ms": 1e3 / rate,
        "duration_s": duration,
        "elapsed_s": elapsed_s,
        "interrupted": interrupted,
        "ticks": sim.ticks,
        "warmup_ticks_excluded": min(warmup_ticks, sim.ticks),
        **_timing_report(sim, controller, sim.timer.timer_period_ns),
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


# ---------------------------------------------------------------------------- report files


def latency_figure(report: dict[str, Any]):
    """A matplotlib Figure of the sense->act and inference latency histograms (log x)."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot global state

    hist = report["latency_histogram"]
    edges = np.asarray(hist["edges_ms"])
    fig = Figure(figsize=(7, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for key, colour in (("total", "tab:blue"), ("inference", "tab:orange")):
        ax.stairs(hist[key], edges, label=f"{key} (p99 "
                  f"{_fmt_ms(report['latency_ms'][key]['p99'])})", color=colour, fill=False)
    p99 = report["latency_ms"]["total"]["p99"]
    if p99 is not None:
        ax.axvline(p99, color="tab:blue", linestyle="--", linewidth=1)
    ax.axvline(report["period_ms"], color="tab:red", linewidth=1,
               label=f"period {report['period_ms']:.0f} ms")
    ax.set_xscale("log")
    used = np.flatnonzero(np.add(hist["total"], hist["inference"]))
    if used.size:
        ax.set_xlim(edges[used[0]] / 2, max(edges[used[-1] + 1], report["period_ms"]) * 2)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title(f"Camera frame -> /cmd_vel at {report['rate_hz']:g} Hz, "
                 f"{report['latency_samples']} frames (warm-up excluded)")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def _fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def write_deploy_report(report: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write `deploy_report.json` and `deploy_latency.png` into `out_dir`, each atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json_atomic(out_dir / "deploy_report.json", report)
    png_path = out_dir / "deploy_latency.png"
    tmp = out_dir / f".{png_path.name}.{os.getpid()}.tmp"
    try:
        latency_figure(report).savefig(tmp, format="png", dpi=120)
        os.replace(tmp, png_path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"json": json_path, "histogram": png_path}
