"""ROS 2 message shims: numpy arrays and robot state to and from ROS 2 (Humble) messages.

The message classes are the ones `rosbags` generates from the ROS 2 Humble definitions:
plain dataclasses with the exact ROS 2 field names whose array fields are numpy arrays, so a
message built here serialises to the same CDR bytes a real ROS 2 node would put on the wire
(`to_cdr` / `from_cdr`) and can be written to a rosbag2 (see `policies.deploy.bag`) without
ROS.

Conventions (REP 103 / REP 105): metres, seconds, radians; x forward, z up; yaw about +z;
stamps are integer nanoseconds.

Anything malformed that arrives from outside raises `MessageError`, a `ValueError`, with a
message naming the field, what it holds and what was expected. A control node counts such
messages as rejected and keeps running (see `policies.deploy.node`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
"""The one typestore every message in this project is built from and serialised with."""

_T = TYPESTORE.types
Time = _T["builtin_interfaces/msg/Time"]
Header = _T["std_msgs/msg/Header"]
Image = _T["sensor_msgs/msg/Image"]
LaserScan = _T["sensor_msgs/msg/LaserScan"]
Twist = _T["geometry_msgs/msg/Twist"]
Odometry = _T["nav_msgs/msg/Odometry"]
UInt32 = _T["std_msgs/msg/UInt32"]
"""Carries the episode index on the deployment's episode-start topic."""
_Vector3 = _T["geometry_msgs/msg/Vector3"]
_Point = _T["geometry_msgs/msg/Point"]
_Quaternion = _T["geometry_msgs/msg/Quaternion"]
_Pose = _T["geometry_msgs/msg/Pose"]
_PoseWithCovariance = _T["geometry_msgs/msg/PoseWithCovariance"]
_TwistWithCovariance = _T["geometry_msgs/msg/TwistWithCovariance"]

_NS_PER_S = 1_000_000_000
_INT32_MAX = 2**31 - 1


class MessageError(ValueError):
    """A message is malformed or holds values this project cannot use."""


@dataclass(frozen=True)
class _Encoding:
    """How one `sensor_msgs/Image` encoding maps onto a numpy array."""

    dtype: np.dtype
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


# Little-endian dtypes because every message built here says is_bigendian = 0.
ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(np.dtype(np.uint8), 3),
    "mono8": _Encoding(np.dtype(np.uint8), 1),
    "32FC1": _Encoding(np.dtype("<f4"), 1),
}
"""Supported image encodings: rgb8 (H, W, 3) uint8, mono8 (H, W) uint8, 32FC1 (H, W) float32
depth in metres."""


# ---------------------------------------------------------------------------- time and header


def stamp(ns: int) -> Time:
    """Turn integer nanoseconds into a `builtin_interfaces/Time` (sec, nanosec)."""
    ns = int(ns)
    sec, nanosec = divmod(ns, _NS_PER_S)
    if not 0 <= sec <= _INT32_MAX:
        raise MessageError(
            f"stamp {ns} ns does not fit builtin_interfaces/Time.sec (int32, >= 0); "
            "pass nanoseconds since an epoch between 1970 and 2038"
        )
    return Time(sec=sec, nanosec=nanosec)


def stamp_to_ns(t: Time) -> int:
    """Turn a `builtin_interfaces/Time` back into integer nanoseconds."""
    return int(t.sec) * _NS_PER_S + int(t.nanosec)


def _header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=stamp(stamp_ns), frame_id=frame_id)


# ---------------------------------------------------------------------------- images


def _infer_encoding(arr: np.ndarray) -> str:
    """Pick the encoding a camera array implies from its shape and dtype."""
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        return "rgb8"
    if arr.dtype == np.uint8 and arr.ndim == 2:
        return "mono8"
    if arr.dtype == np.float32 and arr.ndim == 2:
        return "32FC1"
    raise MessageError(
        f"cannot pick an image encoding for an array of shape {arr.shape} and dtype "
        f"{arr.dtype}; pass (H, W, 3) uint8 for rgb8, (H, W) uint8 for mono8 or (H, W) "
        "float32 depth in metres for 32FC1"
    )


def _expected_shape(height: int, width: int, enc: _Encoding) -> tuple[int, ...]:
    return (height, width) if enc.channels == 1 else (height, width, enc.channels)


def _shape_text(enc: _Encoding) -> str:
    return "(H, W)" if enc.channels == 1 else f"(H, W, {enc.channels})"


def image_to_msg(
    arr: np.ndarray, stamp_ns: int, frame_id: str, encoding: str | None = None
) -> Image:
    """Wrap a camera array in a `sensor_msgs/Image` (row-major, no row padding).

    Args:
        arr: (H, W, 3) uint8 RGB, (H, W) uint8 grey, or (H, W) float32 depth in metres.
        stamp_ns: capture time, integer nanoseconds.
        frame_id: the camera's optical frame.
        encoding: one of `ENCODINGS`; inferred from shape and dtype when None, checked
            against them otherwise.
    """
    arr = np.asarray(arr)
    encoding = _infer_encoding(arr) if encoding is None else encoding
    enc = _lookup_encoding(encoding)
    if arr.ndim < 2 or arr.shape != _expected_shape(arr.shape[0], arr.shape[1], enc):
        raise MessageError(
            f"encoding {encoding!r} needs an array of shape {_shape_text(enc)}, got {arr.shape}"
        )
    if arr.dtype != enc.dtype.newbyteorder("="):
        raise MessageError(
            f"encoding {encoding!r} needs dtype {enc.dtype.name}, got {arr.dtype}; "
            f"convert with arr.astype(np.{enc.dtype.name})"
        )
    height, width = arr.shape[:2]
    # Copy: camera buffers are often reused, and in-process delivery hands this very message
    # to subscribers, so a view would change under them.
    data = np.array(arr, dtype=enc.dtype, order="C", copy=True).reshape(-1).view(np.uint8)
    return Image(
        header=_header(stamp_ns, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * enc.bytes_per_pixel,
        data=data,
    )


def _lookup_encoding(encoding: str) -> _Encoding:
    if encoding not in ENCODINGS:
        raise MessageError(
            f"Image.encoding {encoding!r} is not supported; expected one of {sorted(ENCODINGS)}"
        )
    return ENCODINGS[encoding]


def _check_image_layout(msg: Image, enc: _Encoding) -> None:
    """Raise MessageError unless the header fields describe `data` exactly."""
    if msg.is_bigendian:
        raise MessageError(
            f"Image.is_bigendian is {msg.is_bigendian}; expected 0 (little-endian data)"
        )
    expected_step = msg.width * enc.bytes_per_pixel
    if msg.step != expected_step:
        raise MessageError(
            f"Image.step is {msg.step}; expected width * bytes_per_pixel = "
            f"{msg.width} * {enc.bytes_per_pixel} = {expected_step} for {msg.encoding!r} "
            "(row padding is not supported)"
        )
    expected_len = msg.step * msg.height
    if len(msg.data) != expected_len:
        raise MessageError(
            f"len(Image.data) is {len(msg.data)}; expected step * height = "
            f"{msg.step} * {msg.height} = {expected_len}"
        )


def msg_to_image(msg: Image) -> np.ndarray:
    """Unwrap a `sensor_msgs/Image` into a numpy array, checking every layout field.

    Returns:
        (H, W, 3) uint8 for rgb8, (H, W) uint8 for mono8, (H, W) float32 metres for 32FC1.
        The array is a view of `msg.data` (no copy); messages decoded from CDR are read-only,
        so copy before writing into it.

    Raises:
        MessageError: unsupported encoding, is_bigendian set, step != width * bytes per
            pixel, or len(data) != step * height.
    """
    enc = _lookup_encoding(msg.encoding)
    _check_image_layout(msg, enc)
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    return raw.view(enc.dtype).reshape(_expected_shape(msg.height, msg.width, enc))


# ---------------------------------------------------------------------------- velocity commands


def _require_finite(values: dict[str, float], msgtype: str) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise MessageError(f"{msgtype}.{name} is {value}; expected a finite number")


def action_to_twist(v: float, w: float) -> Twist:
    """Build a `geometry_msgs/Twist` from a unicycle command.

    Args:
        v: forward speed, m/s (linear.x).
        w: yaw rate, rad/s (angular.z); counter-clockwise positive.
    """
    v, w = float(v), float(w)
    _require_finite({"linear.x": v, "angular.z": w}, "Twist")
    return Twist(linear=_Vector3(x=v, y=0.0, z=0.0), angular=_Vector3(x=0.0, y=0.0, z=w))


def twist_to_action(msg: Twist) -> tuple[float, float]:
    """Read a unicycle command (linear.x m/s, angular.z rad/s) out of a `geometry_msgs/Twist`.

    Raises:
        MessageError: any of the six components is NaN or infinite (a broken publisher).
    """
    components = {
        f"{part}.{axis}": float(getattr(getattr(msg, part), axis))
        for part in ("linear", "angular")
        for axis in "xyz"
    }
    _require_finite(components, "Twist")
    return components["linear.x"], components["angular.z"]


# ---------------------------------------------------------------------------- odometry


def pose_to_odometry(
    x: float,
    y: float,
    yaw: float,
    v: float,
    w: float,
    stamp_ns: int,
    frame_id: str = "odom",
    child_frame_id: str = "base_link",
) -> Odometry:
    """Build a `nav_msgs/Odometry` for a planar robot.

    Args:
        x, y: position in `frame_id`, metres.
        yaw: heading about +z, radians.
        v, w: body-frame forward speed (m/s) and yaw rate (rad/s) in `child_frame_id`.
        stamp_ns: integer nanoseconds.

    Covariances are all zero, which ROS reads as "unknown".
    """
    half = 0.5 * float(yaw)
    pose = _Pose(
        position=_Point(x=float(x), y=float(y), z=0.0),
        orientation=_Quaternion(x=0.0, y=0.0, z=math.sin(half), w=math.cos(half)),
    )
    twist = Twist(
        linear=_Vector3(x=float(v), y=0.0, z=0.0), angular=_Vector3(x=0.0, y=0.0, z=float(w))
    )
    return Odometry(
        header=_header(stamp_ns, frame_id),
        child_frame_id=child_frame_id,
        pose=_PoseWithCovariance(pose=pose, covariance=np.zeros(36, dtype=np.float64)),
        twist=_TwistWithCovariance(twist=twist, covariance=np.zeros(36, dtype=np.float64)),
    )


def odometry_to_pose(msg: Odometry) -> tuple[float, float, float]:
    """Read the planar pose (x m, y m, yaw rad in (-pi, pi]) out of a `nav_msgs/Odometry`.

    The quaternion is normalised first, so a slightly denormalised one from a real driver is
    fine; roll and pitch are ignored.

    Raises:
        MessageError: a non-finite position or a zero / non-finite quaternion.
    """
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    _require_finite({"pose.pose.position.x": p.x, "pose.pose.position.y": p.y}, "Odometry")
    norm = math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)
    if not math.isfinite(norm) or norm == 0.0:
        raise MessageError(
            f"Odometry.pose.pose.orientation has norm {norm}; expected a unit quaternion"
        )
    qx, qy, qz, qw = q.x / norm, q.y / norm, q.z / norm, q.w / norm
    yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
    return float(p.x), float(p.y), yaw


# ---------------------------------------------------------------------------- lidar


def scan_to_msg(
    ranges: np.ndarray,
    angle_min: float,
    angle_max: float,
    range_max: float,
    stamp_ns: int,
    frame_id: str = "laser",
    range_min: float = 0.0,
) -> LaserScan:
    """Build a `sensor_msgs/LaserScan` from one sweep.

    Args:
        ranges: (N,) distances in metres, ray i at angle_min + i * angle_increment;
            inf means no return within range_max (REP 117).
        angle_min, angle_max: angles of the first and last ray, radians, counter-clockwise.
        range_max: the sensor's maximum range, metres.
        stamp_ns: integer nanoseconds.
    """
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.ndim != 1 or ranges.size == 0:
        raise MessageError(f"LaserScan.ranges needs a non-empty (N,) array, got {ranges.shape}")
    # angle_max is the last ray itself, so N rays span N - 1 increments.
    increment = (angle_max - angle_min) / (ranges.size - 1) if ranges.size > 1 else 0.0
    return LaserScan(
        header=_header(stamp_ns, frame_id),
        angle_min=float(angle_min),
        angle_max=float(angle_max),
        angle_increment=float(increment),
        time_increment=0.0,
        scan_time=0.0,
        range_min=float(range_min),
        range_max=float(range_max),
        ranges=ranges,
        intensities=np.zeros(0, dtype=np.float32),
    )


# ---------------------------------------------------------------------------- wire format


def to_cdr(msg: Any) -> bytes:
    """Serialise any typestore message to CDR bytes, as it travels on a ROS 2 topic."""
    # CDR header byte 1 carries the byte order, so native order is always readable.
    little = sys.byteorder == "little"
    return bytes(TYPESTORE.serialize_cdr(msg, msg.__msgtype__, little_endian=little))


def from_cdr(data: bytes, msgtype: str) -> Any:
    """Deserialise CDR bytes into a message of `msgtype` (e.g. 'sensor_msgs/msg/Image').

    Raises:
        MessageError: unknown msgtype or bytes that are not a valid message of that type.
    """
    if msgtype not in TYPESTORE.types:
        raise MessageError(
            f"msgtype {msgtype!r} is not in the ROS 2 Humble typestore; "
            "use the full name, e.g. 'sensor_msgs/msg/Image'"
        )
    try:
        return TYPESTORE.deserialize_cdr(data, msgtype)
    except (SerdeError, IndexError, ValueError) as exc:
        raise MessageError(f"bytes are not a valid CDR {msgtype}: {exc}") from exc
