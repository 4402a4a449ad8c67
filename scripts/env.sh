# Sourced by scripts/demo.sh and scripts/test.sh: make a project virtualenv with uv.
# uv comes from PyPI (installed for this user if missing); its cache lives under ~/.cache/uv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v uv >/dev/null 2>&1; then
  export PATH="$HOME/.local/bin:$PATH"
  if ! command -v uv >/dev/null 2>&1; then
    echo "==> installing uv (once) from PyPI" >&2
    pip_flags="--quiet --disable-pip-version-check --root-user-action=ignore"
    python3 -m pip install $pip_flags --user uv >&2 || python3 -m pip install $pip_flags uv >&2
  fi
fi
UV="$(command -v uv || echo "python3 -m uv")"
if [ ! -x .venv/bin/python ]; then
  $UV venv --quiet --python "${BACKSTOP_PYTHON:-python3}" .venv >&2
fi
$UV pip install --quiet --python .venv/bin/python -e ".[${BACKSTOP_EXTRAS:-dev}]" >&2
export PATH="$ROOT/.venv/bin:$PATH"
