#!/usr/bin/env bash
# Regenerate src/backstop/api/v1 from protos/backstop/v1/*.proto.
#
# The wire package is `backstop.v1` (protos/backstop/v1); the Python modules live in
# `backstop.api.v1` so generated code stays in its own package. protoc writes them to
# a scratch dir as backstop/v1/, and the one import prefix is rewritten on the way in.
# Usage: scripts/gen-protos.sh [OUTPUT_SRC_DIR]   (default: src)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/src}"
python="${PYTHON:-$root/.venv/bin/python}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$python" -m grpc_tools.protoc -I "$root/protos" \
  --python_out="$scratch" --grpc_python_out="$scratch" --pyi_out="$scratch" \
  $(cd "$root" && ls protos/backstop/v1/*.proto | sed 's#^protos/##')
dest="$out/backstop/api/v1"
mkdir -p "$dest"
rm -f "$dest"/*_pb2*.py "$dest"/*_pb2*.pyi
for f in "$scratch"/backstop/v1/*_pb2*; do
  sed -e 's/^from backstop\.v1 import/from backstop.api.v1 import/' \
      -e 's/^import backstop\.v1\./import backstop.api.v1./' "$f" > "$dest/$(basename "$f")"
done
printf '"""Generated protobuf and gRPC code. Do not edit: run scripts/gen-protos.sh."""\n' \
  > "$out/backstop/api/__init__.py"
cp "$out/backstop/api/__init__.py" "$dest/__init__.py"
