"""The process table's cost per sample: listing /proc every collect against following the
kernel's process events, on a node with N extra sleeping processes.

    .venv/bin/python bench/process_table.py --processes 1000 --samples 30

Prints the median and the largest ``ProcessCollector.collect()`` time of each mode. The
events mode needs root (the proc connector); it says so when it fell back to listing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from backstop.agent.collectors.processes import ProcessCollector


def timed(collector: ProcessCollector, samples: int, also: list[int]) -> list[float]:
    collector.collect()
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        collector.collect(also=also)
        times.append((time.perf_counter() - start) * 1e3)
        time.sleep(0.05)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    sleepers = [subprocess.Popen(["sleep", "3600"]) for _ in range(args.processes)]
    try:
        time.sleep(4.0)  # past the collector's "young" age: steady state
        also = [sleepers[0].pid]  # as the sampler passes the GPU's processes
        print("| mode | processes | collect() median | max |")
        print("|---|---|---|---|")
        for events in (False, True):
            collector = ProcessCollector(use_events=events)
            mode = "process events" if collector.uses_events else "listing /proc"
            times = timed(collector, args.samples, also)
            size = len(collector.collect().processes)
            print(f"| {mode} | {size} | {statistics.median(times):.2f} ms | {max(times):.2f} ms |")
            collector.close()
    finally:
        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()


if __name__ == "__main__":
    main()
