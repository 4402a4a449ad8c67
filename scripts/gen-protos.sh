#!/usr/bin/env bash
# Regenerate the generated packages under src/backstop/api from protos/:
#
# - protos/backstop/v1/*.proto (wire package `backstop.v1`) -> backstop.api.v1
# - protos/k8s/podresources/v1/*.proto (the kubelet's PodResources API, wire package `v1`)
#   -> backstop.api.podresources.v1
#
# Generated code stays in its own package: protoc writes to a scratch dir under the proto
# path, and the one import prefix is rewritten on the way in.
# Usage: scripts/gen-protos.sh [OUTPUT_SRC_DIR]   (default: src)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/src}"
python="${PYTHON:-$root/.venv/bin/python}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
doc='"""Generated protobuf and gRPC code. Do not edit: run scripts/gen-protos.sh."""'

# generate PROTO_DIR (under protos/) into the Python package PACKAGE (dotted, under backstop.api)
generate() {
  local proto_dir="$1" package="$2"
  local from_module="${proto_dir//\//.}"
  local dest="$out/${package//.//}"
  "$python" -m grpc_tools.protoc -I "$root/protos" \
    --python_out="$scratch" --grpc_python_out="$scratch" --pyi_out="$scratch" \
    $(cd "$root" && ls "protos/$proto_dir"/*.proto | sed 's#^protos/##')
  mkdir -p "$dest"
  rm -f "$dest"/*_pb2*.py "$dest"/*_pb2*.pyi
  for f in "$scratch/$proto_dir"/*_pb2*; do
    sed -e "s/^from ${from_module//./\\.} import/from $package import/" \
        -e "s/^import ${from_module//./\\.}\\./import $package./" "$f" > "$dest/$(basename "$f")"
  done
  printf '%s\n' "$doc" > "$dest/__init__.py"
}

generate backstop/v1 backstop.api.v1
generate k8s/podresources/v1 backstop.api.podresources.v1
printf '%s\n' "$doc" > "$out/backstop/api/__init__.py"
printf '%s\n' "$doc" > "$out/backstop/api/podresources/__init__.py"
