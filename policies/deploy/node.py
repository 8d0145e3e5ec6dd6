"""A tiny in-process ROS 2-like runtime: nodes, keep-last topics, timers on absolute deadlines.

It exists so the deployed policy runs in a fixed-rate control loop with ROS 2's programming
model (publishers, subscriptions, timers, an executor) and measurable timing, without a ROS
install. The surface copies rclpy's names and argument order:

    ctx = Context()
    node = Node("controller", ctx)
    pub = node.create_publisher(Twist, "/cmd_vel", QoSProfile(depth=1))
    node.create_subscription(Image, "/camera/image_raw", on_image, QoSProfile(depth=1))
    timer = node.create_timer(0.05, on_tick)          # 20 Hz
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.spin_until(now_ns() + 5_000_000_000)
    timer.stats.lateness_ns, timer.stats.missed, timer.stats.ticks

Transport: publishing puts the message object itself (no copy, no serialisation) into each
matching subscription's keep-last queue; the executor delivers on its next `spin_once`, in
publication order. Subscribers must treat messages as read-only.

Timing: timers fire on absolute deadlines start + k * period on `time.perf_counter_ns`, so
sleep error never accumulates. The executor sleeps until `spin_window_ns` before the next
deadline and busy-waits the rest, which trades a little CPU for sub-0.1 ms wake-up jitter
(set `spin_window_ns=0` to only sleep). A wake-up that finds several deadlines passed runs the
callback once for the latest one and counts the skipped ones as missed, as rcl's timers do.

Running the same node code under real rclpy
-------------------------------------------
Write nodes against the methods above (e.g. `def build(node, policy) -> None`), then hand
them an `rclpy.node.Node` wrapped in a thin adapter. Only the message classes differ (these
are rosbags dataclasses, rclpy has its generated classes), and both sides speak the same CDR
bytes, so the adapter converts at the boundary:

- `create_subscription(msg_type, topic, cb, qos)` -> the rclpy class from
  `rosidl_runtime_py.utilities.get_message(msg_type.__msgtype__)`, subscribed with
  `raw=True` so the callback receives CDR bytes, and
  `cb(policies.deploy.messages.from_cdr(data, ...))`.
- `create_publisher(...)` -> a wrapper whose `publish(msg)` calls the rclpy publisher with
  `policies.deploy.messages.to_cdr(msg)`; rclpy's `Publisher.publish` accepts serialised
  bytes.
- `QoSProfile(depth)` -> `rclpy.qos.QoSProfile(depth=depth)` (keep-last as here).
- `create_timer` passes straight through; `rclpy.spin(node)` or rclpy's
  `SingleThreadedExecutor` replaces the executor here.
- rclpy does not catch callback errors, so the adapter wraps each subscription callback to
  count and log `MessageError` the way `SingleThreadedExecutor.spin_once` does here, and
  each timer callback to record lateness against rclpy's `timer.time_until_next_call()`.

Only what the deployment loop uses is here; the rest of rclpy's surface (destroying
endpoints, a global context, node introspection) is left out rather than kept untested.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policies.deploy.messages import MessageError

DEFAULT_SPIN_WINDOW_NS = 500_000
"""Busy-wait this long before a deadline: covers the OS sleep overshoot (~50-100 us)."""

LATENESS_SAMPLES_KEPT = 100_000
"""Per-timer lateness samples kept (the newest); ~28 min at 60 Hz, bounded memory after."""

_NS_PER_S = 1_000_000_000


def now_ns() -> int:
    """The runtime's clock: monotonic integer nanoseconds (`time.perf_counter_ns`)."""
    return time.perf_counter_ns()


def _seconds_to_ns(seconds: float, what: str) -> int:
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {seconds}")
    return round(seconds * _NS_PER_S)


# ---------------------------------------------------------------------------- QoS


@dataclass(frozen=True)
class QoSProfile:
    """Keep-last history: a subscription holds at most `depth` undelivered messages."""

    depth: int = 10
    """Queue length; when full, the oldest undelivered message is dropped (and counted)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.depth, int) and self.depth >= 1):
            raise ValueError(f"QoSProfile.depth must be an int >= 1, got {self.depth!r}")


def _as_qos(qos_profile: QoSProfile | int) -> QoSProfile:
    """Accept an int depth as well, as rclpy does."""
    return qos_profile if isinstance(qos_profile, QoSProfile) else QoSProfile(depth=qos_profile)


# ---------------------------------------------------------------------------- topics


class Context:
    """The in-process bus shared by nodes: topic types and the subscriptions on each topic."""

    def __init__(self) -> None:
        self._types: dict[str, type] = {}
        self._subscriptions: dict[str, list[Subscription]] = {}
        # One sequence across topics lets the executor deliver in publication order.
        self._seq = itertools.count()

    def _attach(self, topic: str, msg_type: type) -> None:
        """Register one endpoint; every endpoint on a topic must use the same message type."""
        if not (isinstance(topic, str) and topic):
            raise ValueError(f"topic name must be a non-empty string, got {topic!r}")
        known = self._types.setdefault(topic, msg_type)
        if known is not msg_type:
            raise TypeError(
                f"topic {topic!r} carries {_type_name(known)}, not {_type_name(msg_type)}; "
                "use the same message type on every endpoint or another topic name"
            )

    def _add_subscription(self, sub: Subscription) -> None:
        self._attach(sub.topic_name, sub.msg_type)
        self._subscriptions.setdefault(sub.topic_name, []).append(sub)

    def _publish(self, topic: str, msg: Any) -> None:
        seq = next(self._seq)
        for sub in self._subscriptions.get(topic, ()):
            sub._enqueue(seq, msg)


def _type_name(msg_type: type) -> str:
    return getattr(msg_type, "__msgtype__", msg_type.__qualname__)


class Publisher:
    """Publishes messages of one type on one topic. Made by `Node.create_publisher`."""

    def __init__(self, context: Context, msg_type: type, topic: str, qos: QoSProfile) -> None:
        context._attach(topic, msg_type)
        self._context = context
        self.msg_type = msg_type
        self.topic_name = topic
        self.qos_profile = qos

    def publish(self, msg: Any) -> None:
        """Queue `msg` for every subscription on the topic; delivery happens on spin."""
        if not isinstance(msg, self.msg_type):
            raise TypeError(
                f"publisher on {self.topic_name!r} takes {_type_name(self.msg_type)}, "
                f"got {type(msg).__qualname__}"
            )
        self._context._publish(self.topic_name, msg)


@dataclass
class SubscriptionStats:
    """Counters for one subscription; received = dropped + delivered + rejected + queued."""

    received: int = 0
    """Messages published to it."""
    dropped: int = 0
    """Oldest undelivered messages pushed out of the full keep-last queue."""
    delivered: int = 0
    """Callbacks that returned normally."""
    rejected: int = 0
    """Callbacks that raised MessageError (malformed input)."""


class Subscription:
    """A keep-last queue and a callback. Made by `Node.create_subscription`."""

    def __init__(
        self,
        msg_type: type,
        topic: str,
        callback: Callable[[Any], None],
        qos: QoSProfile,
        logger: logging.Logger,
    ) -> None:
        self.msg_type = msg_type
        self.topic_name = topic
        self.callback = callback
        self.qos_profile = qos
        self.stats = SubscriptionStats()
        self._logger = logger
        self._queue: deque[tuple[int, Any]] = deque(maxlen=qos.depth)

    def _enqueue(self, seq: int, msg: Any) -> None:
        self.stats.received += 1
        if len(self._queue) == self._queue.maxlen:
            self.stats.dropped += 1  # the deque's maxlen pushes out the oldest on append
        self._queue.append((seq, msg))

    def _take(self) -> list[tuple[int, Any]]:
        """Everything queued now, as (publication sequence, message), oldest first."""
        items = list(self._queue)
        self._queue.clear()
        return items

    @property
    def pending(self) -> int:
        """Messages waiting for delivery."""
        return len(self._queue)

    def _dispatch(self, msg: Any) -> None:
        """Run the callback; malformed input is counted and logged, anything else raised."""
        try:
            self.callback(msg)
        except MessageError as exc:
            self.stats.rejected += 1
            # A broken sensor at control rate would flood the log; powers of two keep the
            # first few and then thin out, while the counter stays exact.
            n = self.stats.rejected
            level = logging.WARNING if n & (n - 1) == 0 else logging.DEBUG
            self._logger.log(
                level, "rejected message on %s (%d so far): %s", self.topic_name, n, exc
            )
        else:
            self.stats.delivered += 1


# ---------------------------------------------------------------------------- timers


@dataclass
class TimerStats:
    """Timing record of one timer, all durations in integer nanoseconds."""

    ticks: int = 0
    """Callbacks run."""
    missed: int = 0
    """Deadlines that passed with no callback (skipped after a late wake-up or an overrun)."""
    lateness_ns: deque[int] = field(default_factory=lambda: deque(maxlen=LATENESS_SAMPLES_KEPT))
    """Per tick: wake-up time minus the deadline it served, >= 0 (the newest samples)."""


class Timer:
    """Calls `callback` at start + k * period_ns. Made by `Node.create_timer`."""

    def __init__(self, period_ns: int, callback: Callable[[], None]) -> None:
        self.timer_period_ns = period_ns
        self.callback = callback
        self.stats = TimerStats()
        self._canceled = False
        self.reset()

    def reset(self) -> None:
        """Restart the deadline grid from now (the first call is one period away)."""
        self._start_ns = now_ns()
        self._next_k = 1
        self._canceled = False

    def cancel(self) -> None:
        self._canceled = True

    @property
    def next_deadline_ns(self) -> int:
        """Absolute time of the next unserved deadline on the `now_ns` clock."""
        return self._start_ns + self._next_k * self.timer_period_ns

    def is_ready(self, t_ns: int) -> bool:
        return not self._canceled and t_ns >= self.next_deadline_ns

    def _fire(self, t_ns: int) -> None:
        """Serve the latest deadline <= t_ns, count the earlier unserved ones as missed."""
        latest_k = (t_ns - self._start_ns) // self.timer_period_ns
        self.stats.missed += latest_k - self._next_k
        self.stats.lateness_ns.append(t_ns - (self._start_ns + latest_k * self.timer_period_ns))
        self.stats.ticks += 1
        # Advance before the callback so one that raises cannot make the timer re-fire.
        self._next_k = latest_k + 1
        self.callback()


# ---------------------------------------------------------------------------- node


class Node:
    """A named set of publishers, subscriptions and timers on one `Context`."""

    def __init__(self, node_name: str, context: Context) -> None:
        if not (isinstance(node_name, str) and node_name):
            raise ValueError(f"node name must be a non-empty string, got {node_name!r}")
        self.context = context
        self._logger = logging.getLogger(f"{__name__}.{node_name}")
        self._subscriptions: list[Subscription] = []
        self._timers: list[Timer] = []

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions)

    def create_publisher(
        self, msg_type: type, topic: str, qos_profile: QoSProfile | int
    ) -> Publisher:
        return Publisher(self.context, msg_type, topic, _as_qos(qos_profile))

    def create_subscription(
        self,
        msg_type: type,
        topic: str,
        callback: Callable[[Any], None],
        qos_profile: QoSProfile | int,
    ) -> Subscription:
        sub = Subscription(msg_type, topic, callback, _as_qos(qos_profile), self._logger)
        self.context._add_subscription(sub)
        self._subscriptions.append(sub)
        return sub

    def create_timer(self, timer_period_sec: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(_seconds_to_ns(timer_period_sec, "timer_period_sec"), callback)
        self._timers.append(timer)
        return timer



# ---------------------------------------------------------------------------- executor


class SingleThreadedExecutor:
    """Runs the timers and subscription callbacks of its nodes, one at a time, in this thread.

    Args:
        spin_window_ns: how long before a deadline to stop sleeping and busy-wait; 0 only
            sleeps (lower CPU, jitter of the OS sleep, typically 0.05-1 ms).
    """

    def __init__(self, *, spin_window_ns: int = DEFAULT_SPIN_WINDOW_NS) -> None:
        if spin_window_ns < 0:
            raise ValueError(f"spin_window_ns must be >= 0, got {spin_window_ns}")
        self.spin_window_ns = spin_window_ns
        self._nodes: list[Node] = []
        # An Event, not a bool, so shutdown() from another thread also cuts a sleep short.
        self._stop = threading.Event()

    def add_node(self, node: Node) -> bool:
        """Add `node`; False if it was already added."""
        if node in self._nodes:
            return False
        self._nodes.append(node)
        return True

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        """Ask `spin` / `spin_until` to return after the current callback. Thread-safe."""
        self._stop.set()
        return True

    def _timers(self) -> list[Timer]:
        return [t for n in self._nodes for t in n._timers if not t._canceled]

    def _subscriptions(self) -> list[Subscription]:
        return [s for n in self._nodes for s in n._subscriptions]

    def _has_work(self, t_ns: int) -> bool:
        return any(s.pending for s in self._subscriptions()) or any(
            t.is_ready(t_ns) for t in self._timers()
        )

    def _sleep_until(self, deadline_ns: int) -> None:
        """Sleep to `spin_window_ns` before the deadline, then busy-wait to it."""
        coarse_ns = deadline_ns - self.spin_window_ns - now_ns()
        if coarse_ns > 0 and self._stop.wait(coarse_ns / _NS_PER_S):
            return
        while now_ns() < deadline_ns and not self._stop.is_set():
            pass

    def _run_due_timers(self) -> int:
        ran = 0
        for timer in sorted(self._timers(), key=lambda t: t.next_deadline_ns):
            t_ns = now_ns()
            if timer.is_ready(t_ns):
                timer._fire(t_ns)
                ran += 1
        return ran

    def _deliver(self) -> int:
        """Deliver what is queued now, in publication order; later publications wait."""
        batch = [(seq, sub, msg) for sub in self._subscriptions() for seq, msg in sub._take()]
        batch.sort(key=lambda item: item[0])
        for _, sub, msg in batch:
            sub._dispatch(msg)
        return len(batch)

    def spin_once(self, timeout_sec: float | None = None) -> int:
        """Wait for work (a due timer or a queued message), then run due timers and deliver.

        Waits at most `timeout_sec` (None: until the next timer deadline; returns at once if
        there is no timer, since nothing else in this thread could produce work).

        Returns:
            The number of callbacks run.

        Raises:
            Whatever a callback raises, except MessageError, which is counted as rejected.
        """
        t_ns = now_ns()
        if not self._has_work(t_ns):
            wake = min((t.next_deadline_ns for t in self._timers()), default=None)
            if timeout_sec is not None:
                limit = t_ns + max(0, round(timeout_sec * _NS_PER_S))
                wake = limit if wake is None else min(wake, limit)
            if wake is not None:
                self._sleep_until(wake)
        return self._run_due_timers() + self._deliver()

    def spin_until(self, deadline_ns: int) -> None:
        """Spin until `now_ns() >= deadline_ns` or `shutdown()`."""
        while not self._stop.is_set():
            remaining = deadline_ns - now_ns()
            if remaining <= 0:
                return
            self.spin_once(timeout_sec=remaining / _NS_PER_S)

    def spin(self) -> None:
        """Spin until `shutdown()`."""
        while not self._stop.is_set():
            # A bounded wait keeps a timer-less executor from busy-looping.
            self.spin_once(timeout_sec=0.1)
