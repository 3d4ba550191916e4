"""Connecting to Ray: the one-line errors for a missing install and an unreachable cluster, and local start-up.

Ray is an optional dependency (the ``ray`` extra): everything else in textsiamese works without it, so it is
imported here, on first use, and a missing install is a :class:`~textsiamese.errors.ConfigError` naming the
extra rather than a traceback. ``ray.init(address=...)`` waits a long time for a head node that is not
there, so an address is probed over TCP first and refused at once when nothing listens on it.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from textsiamese.errors import ConfigError

INSTALL_HINT = 'pip install "textsiamese[ray]"'
DEFAULT_RAY_PORT = 6379
LOCAL_OBJECT_STORE = 512 << 20
"""Object store of a local Ray started here: shards are small (texts in, a record out), so 512 MiB is plenty
and leaves the memory to the models."""


def require_ray() -> Any:
    """The ``ray`` module, or a ConfigError naming the extra that installs it."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ConfigError(
            f"the Ray engine needs Ray Data, which is not installed ({error}); install it with {INSTALL_HINT}"
        ) from None
    return ray


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of a Ray address (``host``, ``host:port`` or ``ray://host:port``; default port 6379)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep:
        return rest, DEFAULT_RAY_PORT
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigError(f"Ray address {address!r}: the port {port!r} is not a number") from None


def probe(address: str, timeout: float = 3.0) -> None:
    """A ConfigError unless something accepts TCP connections at ``address`` within ``timeout`` seconds."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            f"Ray address {address!r} is unreachable ({host}:{port}: {reason}); start the cluster "
            "(ray start --head) or leave the address out to run Ray locally"
        ) from None


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Make sure Ray is running; returns True when this call started it (the caller shuts it down).

    ``address``: None starts a local Ray on this machine (``num_cpus`` CPUs, default all) unless one is
    running in this process already; ``"auto"`` joins the cluster that ``ray start`` began on this machine;
    ``host:port`` (or ``ray://host:port``) joins that head node, probed first.
    """
    ray = require_ray()
    if address not in (None, "auto"):
        probe(address)  # first, even with a Ray already running here: the address given must answer
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is None:
        # Ray starts its workers at niceness 15 so that its own daemons stay responsive; in a local Ray
        # the workers are the job itself, and beside any other work they would get next to no CPU (a 2-core
        # box with two other processes busy encoded 8 texts/s instead of 190). A user's setting wins.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            object_store_memory=LOCAL_OBJECT_STORE,
            **quiet,
        )
        return True
    try:
        ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
    except ConnectionError as error:
        raise ConfigError(f"Ray address {address!r}: cannot join the cluster ({error})") from None
    return True


def cluster_cpus() -> int:
    """CPUs the running Ray cluster has (at least 1)."""
    ray = require_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
