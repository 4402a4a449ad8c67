"""Prometheus metrics of the agent (names are part of the operator-facing contract)."""

from __future__ import annotations

from backstop.telemetry.series import Counter, Gauge, Histogram

WORKLOADS = Gauge("backstop_agent_workloads", "Workloads discovered on this node")
COLLECTOR_SECONDS = Gauge(
    "backstop_agent_collector_duration_seconds", "Duration of the last collection", ["collector"]
)
COLLECTOR_SUCCESS = Gauge(
    "backstop_agent_collector_success", "1 if the last collection succeeded", ["collector"]
)
COMMANDS = Counter("backstop_agent_commands_total", "Commands handled", ["action", "state"])
ACTION_SECONDS = Histogram(
    "backstop_agent_action_seconds",
    "Seconds from command receipt to acknowledgement",
    ["action"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0),
)
GPU_UTILIZATION = Gauge("backstop_gpu_utilization_percent", "GPU utilisation", ["gpu", "uuid"])
GPU_MEMORY_USED = Gauge("backstop_gpu_memory_used_bytes", "GPU memory used", ["gpu", "uuid"])
GPU_POWER = Gauge("backstop_gpu_power_watts", "GPU power draw", ["gpu", "uuid"])
GPU_POWER_LIMIT = Gauge("backstop_gpu_power_limit_watts", "GPU power limit", ["gpu", "uuid"])
GPU_TEMPERATURE = Gauge("backstop_gpu_temperature_celsius", "GPU temperature", ["gpu", "uuid"])
UNATTRIBUTED_GPU_MEMORY = Gauge(
    "backstop_gpu_unattributed_memory_bytes",
    "GPU memory in use that the agent cannot attribute to a process in its view",
    ["uuid"],
)
UNATTRIBUTED_WORKLOADS = Gauge(
    "backstop_agent_unattributed_workloads",
    "GPU uses reported as unattributed (processes out of view, or busy GPUs with none listed)",
)
WORKLOAD_INFO = Gauge(
    "backstop_workload_info",
    "1 for each workload on this node, labelled with what identifies it",
    ["workload", "node", "model_id", "framework", "behaviour", "state"],
)
WORKLOAD_HOLDS = Gauge(
    "backstop_workload_holds", "Corrections holding the workload", ["workload", "node"]
)
WORKLOAD_GPU_MEMORY = Gauge(
    "backstop_workload_gpu_memory_bytes",
    "GPU memory the workload's processes hold on one GPU",
    ["workload", "node", "uuid"],
)
