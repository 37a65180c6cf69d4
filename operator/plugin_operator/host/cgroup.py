"""The backend container's memory, as its cgroup counts it, for the host's /metrics.

A cluster without kube-state-metrics, or whose Prometheus does not scrape the kubelet's
cAdvisor, has no other view of a plugin's memory against its limit; the host shares the
plugin's container (and so its cgroup), so it can read both where the kernel keeps them.

The working set is what the kubelet's eviction and cAdvisor's
``container_memory_working_set_bytes`` use: the usage less the inactive file pages, which the
kernel can drop without killing anything. A container without a limit reports none.

In a container, ``/sys/fs/cgroup`` shows the container's own cgroup: with cgroup v2 through
a private cgroup namespace (containerd's default there), with v1 because the runtime mounts
the container's directory of each hierarchy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 says "no limit" with the largest page-aligned counter value (about 2**63); no
# container is given a limit anywhere near 2**62 bytes.
_V1_UNLIMITED = 2**62


@dataclass(frozen=True)
class MemoryReading:
    working_set_bytes: int
    limit_bytes: int | None  # None: no limit


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None  # v2's "max", or something we do not understand


def _stat_value(path: Path, key: str) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def read_memory(root: Path = CGROUP_ROOT) -> MemoryReading | None:
    """The container's memory now; None where no cgroup memory controller can be read."""
    if (root / "memory.current").exists():  # cgroup v2
        usage = _read_int(root / "memory.current")
        limit = _read_int(root / "memory.max")
        inactive = _stat_value(root / "memory.stat", "inactive_file")
    else:  # cgroup v1
        v1 = root / "memory"
        usage = _read_int(v1 / "memory.usage_in_bytes")
        limit = _read_int(v1 / "memory.limit_in_bytes")
        if limit is not None and limit >= _V1_UNLIMITED:
            limit = None
        inactive = _stat_value(v1 / "memory.stat", "total_inactive_file")
    if usage is None:
        return None
    return MemoryReading(working_set_bytes=max(usage - inactive, 0), limit_bytes=limit)


class CgroupMemoryCollector(Collector):
    """Reads the cgroup at each scrape (a few small files), so the values are never stale."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reading = read_memory(self.root)
        if reading is None:
            return
        yield GaugeMetricFamily(
            "plugin_operator_host_memory_working_set_bytes",
            "Memory of the backend container (host, plugin and plugin-front) that cannot be "
            "reclaimed: its cgroup's usage less inactive file pages",
            value=reading.working_set_bytes)
        if reading.limit_bytes is not None:
            yield GaugeMetricFamily(
                "plugin_operator_host_memory_limit_bytes",
                "The backend container's memory limit (absent without one)",
                value=reading.limit_bytes)
