"""ROS 2 shims: message round trips through CDR, the in-process runtime, rosbag2 recording."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from policies.deploy.bag import BagRecorder, read_bag_summary
from policies.deploy.messages import (
    Image,
    MessageError,
    Odometry,
    Twist,
    action_to_twist,
    from_cdr,
    image_to_msg,
    msg_to_image,
    odometry_to_pose,
    pose_to_odometry,
    scan_to_msg,
    stamp,
    stamp_to_ns,
    to_cdr,
    twist_to_action,
)
from policies.deploy.node import Context, Node, QoSProfile, SingleThreadedExecutor, now_ns

STAMP_NS = 1_700_000_000_123_456_789


def _via_cdr(msg):
    return from_cdr(to_cdr(msg), msg.__msgtype__)


# ---------------------------------------------------------------------------- messages


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.1, 10.0, size=(5, 7)).astype(np.float32)
    depth[0, 0], depth[1, 1] = np.inf, np.nan  # no return / invalid pixel, as real cameras give
    return {
        "rgb8": rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8),
        "mono8": rng.integers(0, 256, size=(5, 7), dtype=np.uint8),
        "32FC1": depth,
    }


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "32FC1"])
def test_image_round_trip_is_exact(encoding: str) -> None:
    arr = _images()[encoding]
    msg = image_to_msg(arr, STAMP_NS, "camera_optical")
    assert msg.encoding == encoding
    back = _via_cdr(msg)
    out = msg_to_image(back)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert stamp_to_ns(back.header.stamp) == STAMP_NS
    assert back.header.frame_id == "camera_optical"


def test_image_message_owns_its_pixels() -> None:
    arr = _images()["rgb8"]
    msg = image_to_msg(arr, 0, "cam")
    arr[:] = 0
    assert msg_to_image(msg).any()


def _valid_image() -> Image:
    return image_to_msg(_images()["rgb8"], STAMP_NS, "cam")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"encoding": "yuv422"}, r"Image\.encoding 'yuv422' is not supported"),
        ({"step": 20}, r"Image\.step is 20; expected .* = 21"),
        ({"data": np.zeros(104, dtype=np.uint8)}, r"len\(Image\.data\) is 104; expected .* 105"),
        ({"height": 6}, r"len\(Image\.data\) is 105; expected .* 126"),
        ({"is_bigendian": 1}, r"Image\.is_bigendian is 1; expected 0"),
    ],
)
def test_malformed_image_is_rejected(change: dict, match: str) -> None:
    bad = dataclasses.replace(_valid_image(), **change)
    with pytest.raises(MessageError, match=match):
        msg_to_image(bad)


def test_image_to_msg_refuses_ambiguous_arrays() -> None:
    with pytest.raises(MessageError, match="float32"):
        image_to_msg(np.zeros((4, 4), dtype=np.float64), 0, "cam")
    with pytest.raises(MessageError, match=r"shape \(H, W, 3\)"):
        image_to_msg(np.zeros((4, 4), dtype=np.uint8), 0, "cam", encoding="rgb8")


def test_twist_round_trip_is_exact() -> None:
    v, w = 0.37, -1.2345678901234567
    back = _via_cdr(action_to_twist(v, w))
    assert isinstance(back, Twist)
    assert twist_to_action(back) == (v, w)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_twist_is_rejected(bad: float) -> None:
    msg = action_to_twist(0.1, 0.2)
    msg.angular.z = bad
    with pytest.raises(MessageError, match=r"Twist\.angular\.z"):
        twist_to_action(msg)
    with pytest.raises(MessageError, match=r"Twist\.linear\.x"):
        action_to_twist(bad, 0.0)


def test_odometry_round_trip() -> None:
    x, y, yaw, v, w = 1.25, -3.5, 2.9, 0.4, -0.3
    back = _via_cdr(pose_to_odometry(x, y, yaw, v, w, STAMP_NS))
    assert isinstance(back, Odometry)
    bx, by, byaw = odometry_to_pose(back)
    assert (bx, by) == (x, y)
    assert byaw == pytest.approx(yaw, abs=1e-12)
    assert twist_to_action(back.twist.twist) == (v, w)
    assert (back.header.frame_id, back.child_frame_id) == ("odom", "base_link")
    assert stamp_to_ns(back.header.stamp) == STAMP_NS


def test_scan_round_trip() -> None:
    ranges = np.array([0.5, 1.0, np.inf, 2.5], dtype=np.float32)
    back = _via_cdr(scan_to_msg(ranges, -math.pi / 2, math.pi / 2, 10.0, STAMP_NS))
    np.testing.assert_array_equal(back.ranges, ranges)
    assert back.angle_increment == pytest.approx(math.pi / 3)


def test_stamp_and_bad_bytes() -> None:
    t = stamp(1_500_000_001)
    assert (t.sec, t.nanosec) == (1, 500_000_001)
    with pytest.raises(MessageError, match="not a valid CDR"):
        from_cdr(b"\x00\x01\x00\x00\x05", "sensor_msgs/msg/Image")
    with pytest.raises(MessageError, match="full name"):
        from_cdr(b"", "Image")


# ---------------------------------------------------------------------------- node / executor


def _pair(depth: int = 10) -> tuple[Node, list, SingleThreadedExecutor]:
    node = Node("test", Context())
    got: list = []
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    node.create_subscription(Twist, "/cmd_vel", got.append, QoSProfile(depth=depth))
    return node, got, executor


def test_publisher_reaches_subscriber() -> None:
    node, got, executor = _pair()
    pub = node.create_publisher(Twist, "/cmd_vel", QoSProfile())
    msgs = [action_to_twist(0.1 * i, 0.0) for i in range(3)]
    for m in msgs:
        pub.publish(m)
    assert got == []  # delivery happens on spin, not on publish
    assert executor.spin_once(timeout_sec=0) == 3
    assert got == msgs


def test_keep_last_drops_the_oldest() -> None:
    node, got, executor = _pair(depth=3)
    pub = node.create_publisher(Twist, "/cmd_vel", 3)
    msgs = [action_to_twist(float(i), 0.0) for i in range(5)]
    for m in msgs:
        pub.publish(m)
    executor.spin_once(timeout_sec=0)
    assert got == msgs[2:]
    stats = node.subscriptions[0].stats
    assert (stats.received, stats.dropped, stats.delivered) == (5, 2, 3)


def test_type_mismatch_raises() -> None:
    node, _, _ = _pair()
    with pytest.raises(TypeError, match="carries geometry_msgs/msg/Twist"):
        node.create_publisher(Image, "/cmd_vel", 1)
    pub = node.create_publisher(Twist, "/cmd_vel", 1)
    with pytest.raises(TypeError, match="takes geometry_msgs/msg/Twist"):
        pub.publish(_valid_image())


def test_message_error_is_counted_and_spinning_goes_on() -> None:
    node = Node("camera_sink", Context())
    shapes: list[tuple[int, ...]] = []
    sub = node.create_subscription(
        Image, "/camera", lambda m: shapes.append(msg_to_image(m).shape), 10
    )
    pub = node.create_publisher(Image, "/camera", 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    good = _valid_image()
    pub.publish(good)
    pub.publish(dataclasses.replace(good, step=1))
    pub.publish(good)
    executor.spin_once(timeout_sec=0)
    assert shapes == [(5, 7, 3), (5, 7, 3)]
    assert (sub.stats.rejected, sub.stats.delivered) == (1, 2)


def test_other_callback_errors_propagate() -> None:
    node = Node("n", Context())
    node.create_subscription(Twist, "/t", lambda m: 1 / 0, 1)
    node.create_publisher(Twist, "/t", 1).publish(action_to_twist(0, 0))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    with pytest.raises(ZeroDivisionError):
        executor.spin_once(timeout_sec=0)


def _run_timer(callback_s: float = 0.0, slow_tick: int = -1) -> tuple:
    """100 Hz timer spun for 0.3 s; tick number `slow_tick` takes `callback_s` seconds."""
    node = Node("loop", Context())
    ticks = []

    def on_tick() -> None:
        if len(ticks) == slow_tick:
            time.sleep(callback_s)
        ticks.append(now_ns())

    timer = node.create_timer(0.01, on_tick)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.spin_until(timer._start_ns + 305_000_000)
    return timer.stats


def test_timer_ticks_on_absolute_deadlines() -> None:
    stats = _run_timer()
    # 30 deadlines fall in 0.3 s; each is either served or counted missed, never drifted.
    assert 29 <= stats.ticks + stats.missed <= 31
    assert stats.ticks >= 25  # a loaded machine may skip a few
    assert len(stats.lateness_ns) == stats.ticks
    assert min(stats.lateness_ns) >= 0
    assert np.median(stats.lateness_ns) < 2_000_000


def test_timer_overrun_counts_missed_deadlines() -> None:
    stats = _run_timer(callback_s=0.035, slow_tick=5)
    # A 35 ms callback started at 60 ms ends at 95 ms, past the 70, 80 and 90 ms deadlines: the
    # next wake-up serves 90 ms (>= 5 ms late) and counts 70 and 80 as missed.
    assert stats.missed >= 2
    assert max(stats.lateness_ns) >= 5_000_000
    assert 29 <= stats.ticks + stats.missed <= 31


def test_shutdown_stops_spin() -> None:
    node = Node("n", Context())
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    node.create_timer(0.005, executor.shutdown)
    start = time.perf_counter()
    executor.spin()
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------- bags

BAG_TOPICS = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/cmd_vel": "geometry_msgs/msg/Twist",
    "/odom": "nav_msgs/msg/Odometry",
}


def test_bag_records_three_topics(tmp_path) -> None:
    path = tmp_path / "run_bag"
    counts = {"/camera/image_raw": 4, "/cmd_vel": 7, "/odom": 5}
    image = _images()["rgb8"]
    with BagRecorder(path, BAG_TOPICS) as bag:
        for i in range(counts["/camera/image_raw"]):
            bag.write("/camera/image_raw", image_to_msg(image, STAMP_NS + i, "cam"), STAMP_NS + i)
        for i in range(counts["/cmd_vel"]):
            bag.write("/cmd_vel", action_to_twist(0.1 * i, 0.0), STAMP_NS + i)
        for i in range(counts["/odom"]):
            bag.write("/odom", pose_to_odometry(i, 0, 0, 0, 0, STAMP_NS + i), STAMP_NS + i)

    summary = read_bag_summary(path)
    assert summary == {t: {"msgtype": BAG_TOPICS[t], "count": n} for t, n in counts.items()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_bag"]  # no temp dir left
    assert (path / "run_bag.mcap").is_file() and (path / "metadata.yaml").is_file()

    with Reader(path) as reader:
        conn, _, raw = next(m for m in reader.messages() if m[0].topic == "/camera/image_raw")
        np.testing.assert_array_equal(msg_to_image(from_cdr(raw, conn.msgtype)), image)


def test_bag_is_discarded_on_error(tmp_path) -> None:
    path = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="boom"), BagRecorder(path, BAG_TOPICS) as bag:
        bag.write("/cmd_vel", action_to_twist(0.1, 0.0), STAMP_NS)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bag_refuses_existing_path_and_wrong_types(tmp_path) -> None:
    with pytest.raises(FileExistsError, match="new bag path"):
        BagRecorder(tmp_path, BAG_TOPICS)
    with BagRecorder(tmp_path / "b", BAG_TOPICS) as bag, pytest.raises(TypeError):
        bag.write("/cmd_vel", pose_to_odometry(0, 0, 0, 0, 0, 0), 0)
