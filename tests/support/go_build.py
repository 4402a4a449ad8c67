"""Go programs the interoperability tests run, built once from the Go module proxy and cached.

Everything lands under ``${BACKSTOP_GO_CACHE:-~/.cache/backstop/go}``:

    <tool>-<version>/bin/<tool>      protoc-gen-go, protoc-gen-go-grpc, grpcurl
                                     (``go install``)
    listnodes-<digest>/listnodes     the Go client of tests/interop/go, its code generated from
                                     protos/ (the digest covers the protos, the module's files
                                     and the plugin versions, so any change rebuilds it)

Each build goes to a temporary path renamed into place, so a half-built binary is never used.
Go's own module and build caches keep their defaults; CI pays the first build once (about a
minute for the plugins and the client, a few more for grpcurl).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
OWN_PROTOS = PROTOS / "backstop"
"""Backstop's own protocol (protos/k8s holds the kubelet's API, which the Go client needs not)."""
CLIENT_MODULE = ROOT / "tests" / "interop" / "go"
GO_MODULE_PATH = "github.com/backstop/backstop/gen/go"
"""The import-path prefix of every ``go_package`` in protos/; the client module's own path."""

PROTOC_GEN_GO = ("protoc-gen-go", "google.golang.org/protobuf/cmd/protoc-gen-go", "v1.36.12")
PROTOC_GEN_GO_GRPC = (
    "protoc-gen-go-grpc",
    "google.golang.org/grpc/cmd/protoc-gen-go-grpc",
    "v1.6.2",
)
GRPCURL = ("grpcurl", "github.com/fullstorydev/grpcurl/cmd/grpcurl", "v1.9.4")


class GoBuildError(RuntimeError):
    """Go is missing or a build failed (the message has its output)."""


def cache_root() -> Path:
    default = Path.home() / ".cache" / "backstop" / "go"
    return Path(os.environ.get("BACKSTOP_GO_CACHE", default))


def go_tool(tool: tuple[str, str, str]) -> Path:
    """The binary of ``tool`` (name, package, version), built with ``go install`` if missing."""
    name, package, version = tool
    bindir = cache_root() / f"{name}-{version}" / "bin"
    if not (bindir / name).exists():
        cache_root().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
            _go(["install", f"{package}@{version}"], cwd=Path(tmp), GOBIN=tmp)
            bindir.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp) / name, bindir / name)
    return bindir / name


def listnodes_client() -> Path:
    """The Go ListNodes client, generated from protos/ and built if this version is missing."""
    sources = sorted(OWN_PROTOS.rglob("*.proto")) + sorted(
        p for p in CLIENT_MODULE.rglob("*") if p.is_file()
    )
    digest = hashlib.sha256(repr((PROTOC_GEN_GO, PROTOC_GEN_GO_GRPC)).encode())
    for path in sources:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    binary = cache_root() / f"listnodes-{digest.hexdigest()[:16]}" / "listnodes"
    if binary.exists():
        return binary
    plugins = [
        f"--plugin=protoc-gen-go={go_tool(PROTOC_GEN_GO)}",
        f"--plugin=protoc-gen-go-grpc={go_tool(PROTOC_GEN_GO_GRPC)}",
    ]
    with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
        module = Path(tmp) / "module"
        shutil.copytree(CLIENT_MODULE, module)
        protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", *plugins]
        protoc += [f"--go_out={module}", f"--go_opt=module={GO_MODULE_PATH}"]
        protoc += [f"--go-grpc_out={module}", f"--go-grpc_opt=module={GO_MODULE_PATH}"]
        _run([*protoc, *(str(p.relative_to(PROTOS)) for p in sorted(OWN_PROTOS.rglob("*.proto")))])
        _go(["build", "-o", str(module / "listnodes"), "./cmd/listnodes"], cwd=module)
        binary.parent.mkdir(parents=True, exist_ok=True)
        os.replace(module / "listnodes", binary)
    return binary


def _go(args: list[str], cwd: Path, **env: str) -> None:
    go = shutil.which("go")
    if go is None:
        raise GoBuildError("go is not on PATH")
    _run([go, *args], cwd=cwd, env=dict(os.environ, **env))


def _run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GoBuildError(f"{' '.join(argv[:3])} ... failed:\n{proc.stderr}{proc.stdout}")
