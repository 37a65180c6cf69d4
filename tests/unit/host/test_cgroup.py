"""The host's memory metrics from cgroup files laid out as the kernel shows them."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from plugin_operator.host.cgroup import MemoryReading, read_memory
from plugin_operator.host.http import HostMetrics

MIB = 1024 * 1024


def _v2(root: Path, *, current: int, limit: str, inactive_file: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "memory.current").write_text(f"{current}\n")
    (root / "memory.max").write_text(f"{limit}\n")
    (root / "memory.stat").write_text(f"anon 1000\nfile 2000\nactive_file 5\n"
                                      f"inactive_file {inactive_file}\nshmem 0\n")
    return root


def _v1(root: Path, *, usage: int, limit: int, inactive_file: int) -> Path:
    memory = root / "memory"
    memory.mkdir(parents=True, exist_ok=True)
    (memory / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (memory / "memory.limit_in_bytes").write_text(f"{limit}\n")
    # The cgroup's own inactive_file comes first: the total (with children) is what counts.
    (memory / "memory.stat").write_text(f"cache 10\ninactive_file 1\n"
                                        f"total_inactive_file {inactive_file}\n")
    return root


def test_v2_working_set_is_usage_less_inactive_file(tmp_path: Path) -> None:
    root = _v2(tmp_path, current=100 * MIB, limit=str(256 * MIB), inactive_file=30 * MIB)
    assert read_memory(root) == MemoryReading(working_set_bytes=70 * MIB,
                                              limit_bytes=256 * MIB)


def test_v2_without_a_limit(tmp_path: Path) -> None:
    root = _v2(tmp_path, current=10 * MIB, limit="max", inactive_file=0)
    assert read_memory(root) == MemoryReading(working_set_bytes=10 * MIB, limit_bytes=None)


def test_v1_with_and_without_a_limit(tmp_path: Path) -> None:
    limited = _v1(tmp_path / "a", usage=60 * MIB, limit=128 * MIB, inactive_file=20 * MIB)
    assert read_memory(limited) == MemoryReading(working_set_bytes=40 * MIB,
                                                 limit_bytes=128 * MIB)
    # What v1 says for "no limit" (as read in a container of the local cluster).
    unlimited = _v1(tmp_path / "b", usage=60 * MIB, limit=9223372036854771712,
                    inactive_file=0)
    assert read_memory(unlimited) == MemoryReading(working_set_bytes=60 * MIB,
                                                   limit_bytes=None)


def test_working_set_never_negative(tmp_path: Path) -> None:
    # The files are read one after another; the page cache may grow in between.
    root = _v2(tmp_path, current=5, limit="max", inactive_file=9)
    assert read_memory(root) == MemoryReading(working_set_bytes=0, limit_bytes=None)


def test_no_cgroup_no_reading(tmp_path: Path) -> None:
    assert read_memory(tmp_path) is None


def _samples(metrics: HostMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What a scrape of the host's own registry shows: (name, labels) -> value."""
    text = generate_latest(metrics.registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


WORKING_SET = ("plugin_operator_host_memory_working_set_bytes", ())
LIMIT = ("plugin_operator_host_memory_limit_bytes", ())


def test_host_metrics_show_memory_and_the_plugin(tmp_path: Path) -> None:
    root = _v2(tmp_path, current=100 * MIB, limit=str(256 * MIB), inactive_file=36 * MIB)
    metrics = HostMetrics(cgroup_root=root)
    metrics.plugin_info.labels("acme-datasource", "1.2.3").set(1)
    samples = _samples(metrics)
    assert samples[WORKING_SET] == 64 * MIB
    assert samples[LIMIT] == 256 * MIB
    assert samples[("plugin_operator_host_plugin_info",
                    (("plugin_id", "acme-datasource"), ("version", "1.2.3")))] == 1
    # Read at each scrape, not once.
    (root / "memory.current").write_text(f"{200 * MIB}\n")
    assert _samples(metrics)[WORKING_SET] == 164 * MIB


def test_host_metrics_without_a_limit_or_a_cgroup(tmp_path: Path) -> None:
    unlimited = _samples(HostMetrics(cgroup_root=_v2(tmp_path / "a", current=MIB,
                                                     limit="max", inactive_file=0)))
    assert unlimited[WORKING_SET] == MIB
    assert LIMIT not in unlimited
    nothing = _samples(HostMetrics(cgroup_root=tmp_path / "none"))
    assert WORKING_SET not in nothing
    assert LIMIT not in nothing
