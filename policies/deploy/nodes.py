"""The nodes of the deployment loop, their topics and QoS, and the command mapping.

    SimNode  --/episode_start (std_msgs/UInt32)-->             PolicyNode (frame stack reset)
    SimNode  --/camera/image_raw (sensor_msgs/Image rgb8)-->  PolicyNode
    SimNode  --/odom (nav_msgs/Odometry)-->                   (bag, monitoring)
    SimNode  <--/cmd_vel (geometry_msgs/Twist)--              PolicyNode

`SimNode` stands in for the robot: its timer applies the latest `/cmd_vel`, steps the env one
control step, and publishes the camera frame and odometry. `PolicyNode` turns each frame into
a command with the exported ONNX model, stacking frames exactly as in training
(`envs.wrappers.FrameStack`: the first frame of an episode fills the stack). A command
computed from tick k's frame is applied at tick k + 1, as on a robot whose base controller
reads the newest command each cycle.

Episode ends are the simulator's business, not the controller's: the tick after the last step
rebuilds the scene (~14 ms at 64x64, most of a 50 Hz period) and publishes the new episode's
index on `/episode_start`, then its first frame, without stepping.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

import rundir
from envs.config import EnvConfig
from envs.nav_env import DISCRETE_ACTIONS, CameraNavEnv
from envs.wrappers import STOP, FrameStack, append_command, command_fractions
from policies.deploy.bag import BagRecorder
from policies.deploy.messages import (
    Image,
    MessageError,
    Odometry,
    Twist,
    UInt32,
    action_to_twist,
    image_to_msg,
    msg_to_image,
    pose_to_odometry,
    stamp_to_ns,
    twist_to_action,
)
from policies.deploy.metrics import SAMPLES_KEPT, STAGES, DeployMetrics, TickSample
from policies.deploy.node import Context, Node, QoSProfile, Timer, now_ns
from policies.export import OnnxPolicy

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_ODOM = "/odom"
TOPIC_CMD = "/cmd_vel"
TOPIC_EPISODE = "/episode_start"
MESSAGE_TYPES: dict[str, type] = {TOPIC_IMAGE: Image, TOPIC_CMD: Twist, TOPIC_ODOM: Odometry,
                                  TOPIC_EPISODE: UInt32}
TOPICS = {topic: t.__msgtype__ for topic, t in MESSAGE_TYPES.items()}
"""Topic -> message type of everything the loop publishes (and a bag records)."""

SENSOR_QOS = QoSProfile(depth=5)
"""Camera subscription: keep-last 5, the depth of rclpy's `qos_profile_sensor_data`."""
COMMAND_QOS = QoSProfile(depth=1)
"""Velocity commands: only the newest matters."""
EPISODE_QOS = QoSProfile(depth=5)
"""Episode starts: never dropped before the frame that follows them."""
RECORD_QOS = QoSProfile(depth=100)
"""The bag's subscriptions: deep enough never to drop within one executor pass."""

DEPLOY_SEED = rundir.SEED_OFFSETS["deploy_base"]
"""Reset seed of the first deployment episode (episode i uses DEPLOY_SEED + i)."""


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
    frac = command_fractions(action, continuous)
    return action_to_twist(frac[0] * cfg.max_linear_mps, frac[1] * cfg.max_angular_rps)


# ---------------------------------------------------------------------------- the robot


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
        # Raw camera frames: stacking is the controller's job, as on a robot.
        self.env = CameraNavEnv(cfg, continuous=continuous)
        self.warmup_ticks = warmup_ticks
        self.inject_malformed_every = inject_malformed_every
        self.metrics = metrics
        self.seed = seed
        self.image_pub = self.create_publisher(Image, TOPIC_IMAGE, SENSOR_QOS)
        self.odom_pub = self.create_publisher(Odometry, TOPIC_ODOM, SENSOR_QOS)
        self.episode_pub = self.create_publisher(UInt32, TOPIC_EPISODE, EPISODE_QOS)
        self.cmd_sub = self.create_subscription(Twist, TOPIC_CMD, self._on_cmd, COMMAND_QOS)
        self.timer: Timer = self.create_timer(1.0 / rate, self._on_tick)
        self.published = {topic: 0 for topic in TOPICS if topic != TOPIC_CMD}
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
        self._episode_start = True

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
        stamp_ns = now_ns()
        if self._episode_start:
            # Before the episode's first frame: the controller restarts its frame stack.
            self.episode_pub.publish(UInt32(data=self.episodes))
            self.published[TOPIC_EPISODE] += 1
            self._episode_start = False
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

    With frame stacking (k > 1 in the policy's observation config) it stacks frames with the
    same `FrameStack` the training and evaluation envs use: an `/episode_start` message makes
    the next frame fill the stack, as a reset does there, so no stack mixes two episodes. A
    recurrent policy's LSTM state is zeroed at that same frame, so no episode starts from the
    memory of the last one. A policy that reads its previous command (`previous_command` in its
    observation config) gets the command this node last published, the stop command at that
    same frame.

    Samples (after `warmup` frames): per frame the ns spent in conversion, inference, publish
    and the total from the frame's stamp to the command published.
    """

    def __init__(self, context: Context, policy: OnnxPolicy, warmup: int = 0,
                 metrics: DeployMetrics | None = None) -> None:
        super().__init__("policy", context)
        self.policy = policy
        self.cfg = policy.meta.env_config()
        h, w, _ = policy.image_shape
        self.frame_shape = (h, w, self.cfg.observation.image_channels)
        self.stack = FrameStack(self.cfg.observation.frame_stack,
                                self.cfg.observation.frame_stride)
        self.warmup = warmup
        self.metrics = metrics
        self.cmd_pub = self.create_publisher(Twist, TOPIC_CMD, COMMAND_QOS)
        self.image_sub = self.create_subscription(Image, TOPIC_IMAGE, self._on_image, SENSOR_QOS)
        self.episode_sub = self.create_subscription(UInt32, TOPIC_EPISODE, self._on_episode,
                                                    EPISODE_QOS)
        self.published = 0
        self.frames = 0
        self.samples: dict[str, deque[int]] = {s: deque(maxlen=SAMPLES_KEPT) for s in STAGES}
        self._episode_start = True
        self._command = STOP

    def _on_episode(self, msg: UInt32) -> None:
        self._episode_start = True

    def _convert(self, msg: Image) -> np.ndarray:
        """Image -> uint8 (1, H, W, C) batch; MessageError for anything the policy cannot use."""
        if msg.encoding != "rgb8":
            raise MessageError(f"Image.encoding is {msg.encoding!r}; the policy needs 'rgb8'")
        image = msg_to_image(msg)
        if image.shape != self.frame_shape:
            raise MessageError(f"Image is {image.shape}; the policy needs {self.frame_shape} "
                               "(resize the camera stream to the training resolution)")
        # Only a frame the policy can use starts the episode's stack (a rejected one does not).
        if self._episode_start:
            self.policy.reset()
            self._command = STOP
        stacked = self.stack.reset(image) if self._episode_start else self.stack.push(image)
        self._episode_start = False
        if self.cfg.observation.previous_command:
            stacked = append_command(stacked, self._command)
        return stacked[None]

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
        action = self.policy.action(out)
        self._command = command_fractions(action, self.policy.continuous)
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
        for topic, msg_type in MESSAGE_TYPES.items():
            self.create_subscription(msg_type, topic, self._writer(topic), RECORD_QOS)

    def _writer(self, topic: str) -> Callable[[Any], None]:
        def write(msg: Any) -> None:
            self.bag.write(topic, msg, time.time_ns())
        return write
