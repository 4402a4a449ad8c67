"""The agent loads heavy libraries only where it uses them (its memory budget: see the agent
cost benchmark in docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys

LAZY = ("celpy", "lark", "pendulum", "yaml", "psutil")
"""cel-python and what it brings (policy expressions), PyYAML (policy documents), psutil
(terminations): none is needed by an agent that has no policy and has terminated nothing."""


def loaded_after(code: str) -> set[str]:
    tops = "sorted({m.split('.')[0] for m in sys.modules})"
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
    )

    assert {"celpy", "yaml"} <= loaded
