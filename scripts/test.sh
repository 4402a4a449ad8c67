#!/usr/bin/env bash
# The whole test suite: lint, types, layer contracts, generated code, then pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k gateway).
source "$(dirname "$0")/env.sh"
echo "==> ruff"
ruff check src tests
ruff format --check src tests
echo "==> mypy --strict src"
mypy
echo "==> import layers"
lint-imports
echo "==> pytest"
exec pytest "$@"
