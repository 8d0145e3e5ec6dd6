"""Record and summarise rosbag2 bags (MCAP storage) without a ROS install.

Bags written here open in `ros2 bag info/play`, Foxglove and anything else that reads
rosbag2 + MCAP: the messages are the ROS 2 Humble types from `policies.deploy.messages`,
serialised to CDR exactly as a ROS 2 node would.

A bag is written into a hidden temporary directory next to `path` and renamed to `path` only
when the `with` block ends cleanly, so a crash never leaves a half-written bag behind that
looks finished.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from policies.deploy.messages import TYPESTORE, to_cdr

BAG_VERSION = 8
"""rosbag2 metadata version: the oldest this writer supports, so the most ROS 2 tools read it."""


class BagRecorder:
    """Write messages on a fixed set of topics to a rosbag2 directory at `path`.

    Args:
        path: the bag directory to create; it must not exist yet.
        topics: topic name -> message type name, e.g. {"/cmd_vel": "geometry_msgs/msg/Twist"}.

    Usage:
        with BagRecorder("runs/x/bag", {"/cmd_vel": "geometry_msgs/msg/Twist"}) as bag:
            bag.write("/cmd_vel", action_to_twist(0.3, 0.1), stamp_ns)
    """

    def __init__(self, path: str | Path, topics: dict[str, str]) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(
                f"{self.path} exists already; pick a new bag path or delete the old bag"
            )
        if not topics:
            raise ValueError("topics is empty; pass at least one {topic: msgtype}")
        unknown = sorted(t for t in topics.values() if t not in TYPESTORE.types)
        if unknown:
            raise ValueError(
                f"message types {unknown} are not in the ROS 2 Humble typestore; "
                "use full names such as 'sensor_msgs/msg/Image'"
            )
        self.topics = dict(topics)
        self.counts: dict[str, int] = dict.fromkeys(topics, 0)
        self._tmp_dir: Path | None = None
        self._writer: Writer | None = None
        self._connections: dict[str, Connection] = {}

    def __enter__(self) -> BagRecorder:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Same parent, so the final rename stays on one filesystem and is atomic.
        self._tmp_dir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        # The storage file is named after the bag directory, so write under the final name.
        self._writer = Writer(
            self._tmp_dir / self.path.name, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP
        )
        try:
            self._writer.open()
            for topic, msgtype in self.topics.items():
                self._connections[topic] = self._writer.add_connection(
                    topic, msgtype, typestore=TYPESTORE
                )
        except BaseException:
            self._discard()
            raise
        return self

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialise `msg` to CDR and append it to `topic` with receive time `stamp_ns` (ns)."""
        if self._writer is None:
            raise RuntimeError("BagRecorder is not open; use it as `with BagRecorder(...) as bag`")
        if topic not in self._connections:
            raise KeyError(f"topic {topic!r} was not declared; declared: {sorted(self.topics)}")
        msgtype = self.topics[topic]
        if getattr(msg, "__msgtype__", None) != msgtype:
            raise TypeError(
                f"topic {topic!r} records {msgtype}, got {getattr(msg, '__msgtype__', type(msg))}"
            )
        self._writer.write(self._connections[topic], int(stamp_ns), to_cdr(msg))
        self.counts[topic] += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            self._writer.close()
            if self.path.exists():
                raise FileExistsError(f"{self.path} appeared while recording; bag discarded")
            (self._tmp_dir / self.path.name).rename(self.path)
        except BaseException:
            self._discard()
            raise
        shutil.rmtree(self._tmp_dir, ignore_errors=True)
        self._writer = None

    def _discard(self) -> None:
        """Drop the partial bag: abort the writer and remove the temporary directory."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)


def read_bag_summary(path: str | Path) -> dict[str, dict[str, Any]]:
    """Topics of a rosbag2 bag: {topic: {"msgtype": str, "count": int}}.

    Raises:
        FileNotFoundError: no bag at `path`.
    """
    with Reader(Path(path)) as reader:
        return {
            topic: {"msgtype": info.msgtype, "count": info.msgcount}
            for topic, info in reader.topics.items()
        }
