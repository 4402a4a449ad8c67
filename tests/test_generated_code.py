"""The committed protobuf code is exactly what the .proto files generate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("package", [("v1",), ("podresources", "v1")], ids=".".join)
def test_generated_code_matches_protos(tmp_path: Path, package: tuple[str, ...]) -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-protos.sh"), str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    fresh = tmp_path.joinpath("backstop", "api", *package)
    committed = ROOT.joinpath("src", "backstop", "api", *package)
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(p.name for p in committed.iterdir() if p.suffix in (".py", ".pyi"))
    stale = [n for n in names if (fresh / n).read_bytes() != (committed / n).read_bytes()]
    assert not stale, f"regenerate with scripts/gen-protos.sh: {stale} differ"
