"""Backstop's own series read back by the official Prometheus client's parser: names,
types, escaping, float spelling, histogram buckets and the process series."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from backstop.telemetry.process_series import process_lines
from backstop.telemetry.series import Counter, Gauge, Histogram, Registry, go_float

HOSTILE = 'a "quoted"\\ value\nwith a newline } and # no comment'


def parsed(
    registry: Registry, labels: dict[str, str] | None = None
) -> dict[str, tuple[str, list[Sample]]]:
    text = "".join(registry.lines(labels or {}))
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def test_gauges_counters_and_their_labels_read_back_exactly() -> None:
    registry = Registry()
    workloads = Gauge("backstop_x_workloads", "Workloads", registry=registry)
    commands = Counter(
        "backstop_x_commands_total",
        "Commands\nhandled \\ here",
        ["action", "state"],
        registry=registry,
    )
    workloads.set(3)
    commands.labels("pause", "acked").inc()
    commands.labels(action="pause", state="acked").inc(2)
    commands.labels("kill", HOSTILE).inc()

    families = parsed(registry, {"node": "node-a"})

    assert families["backstop_x_workloads"] == (
        "gauge",
        [Sample("backstop_x_workloads", {"node": "node-a"}, 3.0)],
    )
    kind, samples = families["backstop_x_commands"]
    assert kind == "counter"
    assert {(s.labels["action"], s.labels["state"]): s.value for s in samples} == {
        ("pause", "acked"): 3.0,
        ("kill", HOSTILE): 1.0,
    }
    assert all(
        s.name == "backstop_x_commands_total" and s.labels["node"] == "node-a" for s in samples
    )
    assert "# HELP backstop_x_commands_total Commands\\nhandled \\\\ here\n" in "".join(
        registry.lines({})
    )


def test_the_servers_labels_give_way_to_a_series_own() -> None:
    registry = Registry()
    Gauge("backstop_x_info", "Info", ["node"], registry=registry).labels("node-b").set(1)

    (sample,) = parsed(registry, {"node": "node-a"})["backstop_x_info"][1]

    assert sample.labels == {"node": "node-b"}


def test_a_removed_series_is_no_longer_shown_and_a_labelled_family_starts_empty() -> None:
    registry = Registry()
    holds = Gauge("backstop_x_holds", "Holds", ["workload"], registry=registry)
    assert parsed(registry)["backstop_x_holds"] == ("gauge", [])
    holds.labels("w1").set(2)
    holds.labels("w2").set(1)
    holds.remove("w1")
    holds.remove("never-shown")

    assert [s.labels["workload"] for s in parsed(registry)["backstop_x_holds"][1]] == ["w2"]


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    registry = Registry()
    seconds = Histogram(
        "backstop_x_seconds", "Seconds", ["action"], buckets=(0.1, 1.0, 10.0), registry=registry
    )
    for value in (0.05, 0.1, 0.5, 3.0, 50.0):
        seconds.labels("pause").observe(value)

    kind, samples = parsed(registry)["backstop_x_seconds"]

    assert kind == "histogram"
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert buckets == {"0.1": 2.0, "1.0": 3.0, "10.0": 4.0, "+Inf": 5.0}
    values = {s.name: s.value for s in samples if not s.name.endswith("_bucket")}
    assert values == {
        "backstop_x_seconds_count": 5.0,
        "backstop_x_seconds_sum": pytest.approx(53.65),
    }


def test_floats_are_spelt_as_prometheus_spells_them() -> None:
    assert [go_float(v) for v in (0.5, 1, 1e7, 12345678.0, 1e21, float("inf"), float("-inf"))] == [
        "0.5", "1.0", "1e+07", "1.2345678e+07", "1e+21", "+Inf", "-Inf",
    ]  # fmt: skip
    assert go_float(float("nan")) == "NaN"


def test_misuse_is_refused() -> None:
    registry = Registry()
    with pytest.raises(ValueError, match="_total"):
        Counter("backstop_x_commands", "Commands", registry=registry)
    counter = Counter("backstop_x_things_total", "Things", ["kind"], registry=registry)
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("a").inc(-1)
    with pytest.raises(ValueError, match="labels are"):
        counter.labels("a", "b")
    with pytest.raises(ValueError, match="labels are"):
        counter.labels(other="a")


def test_writers_on_many_threads_lose_no_increment() -> None:
    registry = Registry()
    counter = Counter("backstop_x_reports_total", "Reports", registry=registry)

    def write() -> None:
        for i in range(10_000):
            counter.inc()
            if i % 1000 == 0:  # reading while others write
                "".join(registry.lines({}))

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert parsed(registry)["backstop_x_reports"][1][0].value == 80_000


def test_process_series_describe_this_process() -> None:
    registry = Registry()
    registry.register(process_lines)
    lines = Path("/proc/self/status").read_text().splitlines()
    status = dict(line.split(":", 1) for line in lines)
    rss = int(status["VmRSS"].split()[0]) * 1024

    families = parsed(registry)

    assert families["process_resident_memory_bytes"][1][0].value == pytest.approx(rss, rel=0.2)
    assert families["process_open_fds"][1][0].value == pytest.approx(
        len(os.listdir("/proc/self/fd")), abs=2
    )
    assert families["process_cpu_seconds"][0] == "counter"
    assert families["process_cpu_seconds"][1][0].value > 0
    assert families["process_start_time_seconds"][1][0].value > 1.6e9


def test_no_process_series_without_proc(tmp_path: Path) -> None:
    assert list(process_lines({}, tmp_path)) == []
