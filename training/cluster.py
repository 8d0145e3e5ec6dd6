"""Where a sweep's trials run: Ray started in this process on this machine's cores (the
default), or an existing Ray cluster named by `--address` or `RAY_ADDRESS`.

Facts of Ray 2.60 that shape this module (measured on a Linux machine with one ethernet
interface):

- A local `ray.init()` registers its node on the ethernet address, not on loopback; with
  `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` in the environment of the driver (and of any
  `ray start`) it resolves to 127.0.0.1. The local default sets it, so a sweep on one machine
  opens no port beyond loopback; a remote cluster keeps Ray's own address resolution.
- `ray.init()` without an address joins whatever cluster `/tmp/ray/ray_current_cluster` names,
  even a stale one; the local default passes `address="local"` so it always starts its own.
- `ray start --head` turns token authentication on. A driver joining it needs
  `RAY_AUTH_MODE=token` and the head's token (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or
  `~/.ray/auth_token`); without them `ray.init` retries for about 20 s and raises a generic
  ConnectionError, and an address where nothing listens makes it retry for minutes. So an
  address is probed first (a TCP connect, then one GCS request) and every failure becomes one
  line that says what to set, before any trial starts.
- Ray sets `OMP_NUM_THREADS` of a worker to the CPUs of its task when it is not already set,
  so torch inside a trial that asks for one CPU runs single-threaded.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from envs.config import ConfigError

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Environment that keeps a Ray node started on this machine on 127.0.0.1."""

LOOPBACK = "127.0.0.1"

DEFAULT_PORT = 6379
"""The head's GCS port when an address names no port (Ray's default)."""

PROBE_TIMEOUT_S = 10.0


class ClusterError(ConfigError):
    """The cluster cannot be used as asked; the message is one line that says what to do."""


@dataclass(frozen=True)
class ClusterInfo:
    """What the sweep runs on, as recorded in sweep.json."""

    mode: str
    """local (started in this process) or cluster (joined at `address`)."""
    address: str | None
    nodes: list[str] = field(default_factory=list)
    """Addresses of the alive nodes."""
    cpus: float = 0.0
    gpus: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "address": self.address, "nodes": self.nodes,
                "cpus": self.cpus, "gpus": self.gpus}


def resolve_address(address: str | None) -> str | None:
    """`--address`, else `RAY_ADDRESS`, else None (a local Ray in this process)."""
    value = address if address is not None else os.environ.get("RAY_ADDRESS")
    value = (value or "").strip()
    return None if value in ("", "local") else value


def split_address(address: str) -> tuple[str, int]:
    """`HOST[:PORT]` -> (host, port); a Ray Client URL or a bad port is a one-line error."""
    if "://" in address:
        raise ClusterError(f"--address {address}: Ray Client URLs are not supported; pass the "
                           f"head's GCS address HOST:PORT (port {DEFAULT_PORT} unless "
                           "`ray start --head --port` chose another)")
    host, _, port_text = address.rpartition(":") if ":" in address else (address, "", "")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ClusterError(f"--address {address}: write it as HOST:PORT, e.g. "
                           f"127.0.0.1:{DEFAULT_PORT}")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def _auth_message(address: str) -> str:
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return (f"the Ray cluster at {address} requires token authentication: set "
                "RAY_AUTH_MODE=token and give its token in RAY_AUTH_TOKEN (or the file "
                "~/.ray/auth_token; `ray get-auth-token` on the head prints it)")
    return (f"the Ray cluster at {address} rejected this machine's token: set RAY_AUTH_TOKEN "
            "(or ~/.ray/auth_token) to the head's token (`ray get-auth-token` on the head "
            "prints it)")


def _reload_auth_settings() -> None:
    """Make Ray read RAY_AUTH_MODE and the token again (it caches both at first use), so the
    environment of this call decides, as `ray.init` itself does when it turns auth on."""
    with contextlib.suppress(ImportError, AttributeError):
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Check that a Ray head answers at `address` and accepts this driver's credentials.

    Raises ClusterError with one line: nothing listening, not a Ray head, or an
    authentication failure (with the variable to set).
    """
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=min(timeout_s, 5.0)):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ClusterError(f"cannot reach a Ray cluster at {host}:{port} ({reason}): start a "
                           f"head there (`ray start --head --port={port}`) or point --address "
                           "/ RAY_ADDRESS at a running head's HOST:PORT") from None
    _reload_auth_settings()
    outcome: dict[str, BaseException | None] = {}

    def ask() -> None:
        # One GCS request: an authentication failure answers at once, where ray.init only
        # retries for 20 s and then reports a generic connection error.
        from ray._raylet import GcsClient  # Ray's own client, as ray.init itself uses it

        try:
            GcsClient(address=f"{host}:{port}").internal_kv_get(b"embodied-probe", None,
                                                                timeout=timeout_s)
            outcome["error"] = None
        except BaseException as err:  # noqa: BLE001 - classified below
            outcome["error"] = err

    thread = threading.Thread(target=ask, daemon=True, name="ray-probe")
    thread.start()
    thread.join(timeout_s + 2.0)
    if "error" not in outcome:
        raise ClusterError(f"{host}:{port} accepts connections but no Ray head answered within "
                           f"{timeout_s:.0f} s: pass the GCS port that `ray start --head` "
                           "printed (--address / RAY_ADDRESS)")
    error = outcome["error"]
    if error is None:
        return
    text = f"{type(error).__name__}: {error}"
    if "AuthenticationError" in text or "InvalidAuthToken" in text or "Unauthenticated" in text:
        raise ClusterError(_auth_message(f"{host}:{port}"))
    raise ClusterError(f"the Ray head at {host}:{port} did not answer a request "
                       f"({text.splitlines()[0][:160]}); check that it runs the same Ray "
                       "version as this machine")


def _use_loopback() -> None:
    """Keep this process's Ray on 127.0.0.1 (see the module notes).

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when `ray._private.ray_constants` is
    first imported, and otherwise rewrites a loopback address to the ethernet one; when Ray was
    imported earlier in this process the value it read is updated to match.
    """
    os.environ.update(LOOPBACK_ENV)
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def connect(address: str | None = None, num_cpus: int | None = None) -> ClusterInfo:
    """Start or join Ray for this process and say what it offers.

    `address` None: a local Ray with `num_cpus` (default: every core) on 127.0.0.1.
    Otherwise `address` is probed (see `probe`) and joined; a head on this machine's loopback
    is joined over loopback only. Call `disconnect()` when done.
    """
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        # Ray warns that a new local cluster turned token authentication on: true, and no
        # news to the user of a sweep on one machine
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR)
        _use_loopback()
        options.update(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                       include_dashboard=False, _node_ip_address=LOOPBACK)
        mode = "local"
    else:
        if address != "auto":
            host, port = split_address(address)
            if _is_loopback(host):
                _use_loopback()
                options["_node_ip_address"] = LOOPBACK
                address = f"{LOOPBACK}:{port}"
            probe(address)
        options["address"] = address
        mode = "cluster"
    import ray

    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError) as err:
        raise ClusterError(f"could not join the Ray cluster at {address} "
                           f"({str(err).splitlines()[0]}); check --address / RAY_ADDRESS "
                           "and, for token authentication, RAY_AUTH_MODE=token") from None
    resources = ray.cluster_resources()
    nodes = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive"))
    return ClusterInfo(mode, address, nodes, float(resources.get("CPU", 0.0)),
                       float(resources.get("GPU", 0.0)))


def disconnect() -> None:
    """Leave the cluster (a local Ray started by `connect` is shut down with it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
