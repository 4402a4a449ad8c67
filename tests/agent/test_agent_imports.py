"""The agent loads heavy libraries only where it uses them (its memory budget: see the agent
cost benchmark in docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys

LAZY = ("celpy", "lark", "pendulum", "yaml", "psutil", "zipfile", "pickletools")
"""cel-python and what it brings (policy expressions), PyYAML (policy documents), psutil
(terminations), zipfile and pickletools (PyTorch checkpoints): none is needed by an agent
that has no policy, has terminated nothing and has found no checkpoint."""


NEVER = ("prometheus_client", "http.server", "http.client")
"""The official Prometheus client and the standard library's HTTP (their imports cost 5 MiB):
the agent writes its exposition and its few HTTP exchanges itself."""


def loaded_after(code: str, whole_names: bool = False) -> set[str]:
    tops = (
        "sorted(sys.modules)" if whole_names else "sorted({m.split('.')[0] for m in sys.modules})"
    )
    script = f"import sys\n{code}\nprint(' '.join({tops}))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def test_the_agent_starts_without_the_libraries_it_may_never_use() -> None:
    loaded = loaded_after("import backstop.agent.daemon")

    assert "grpc" in loaded  # the check sees what the agent imports
    assert loaded.isdisjoint(LAZY), sorted(loaded & set(LAZY))


def test_they_load_where_they_are_used() -> None:
    loaded = loaded_after(
        "import backstop.agent.daemon\n"
        "from backstop.policy import parse_policy\n"
        "from backstop.policy.cel_view import compile_expression\n"
        "compile_expression('workload.gpus > 0')\n"
        "parse_policy\n"
        "from backstop.agent.weights import parse_file\n"
        "import pathlib, tempfile\n"
        "checkpoint = pathlib.Path(tempfile.mkdtemp()) / 'model.pt'\n"
        "checkpoint.write_bytes(b'PK\\x03\\x04' + bytes(60))\n"
        "parse_file(checkpoint)\n"
    )

    assert {"celpy", "yaml", "zipfile", "pickletools"} <= loaded


def test_the_agent_never_loads_the_prometheus_client_nor_http_server() -> None:
    loaded = loaded_after(
        "import backstop.agent.daemon\n"
        "from backstop.telemetry.endpoint import TelemetryServer\n"
        "TelemetryServer('127.0.0.1:0', lambda: (True, 'ok')).stop()\n",
        whole_names=True,
    )

    assert "backstop.telemetry.endpoint" in loaded
    assert loaded.isdisjoint(NEVER), sorted(loaded & set(NEVER))
