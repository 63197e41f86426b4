# Sourced by scripts/dev and scripts/test: create (or reuse) the project's virtual environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Re-install when pyproject.toml changes (cheap when nothing did).
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
# The pages' front-end packages (npm ci from web/frontend's lock file) and stylesheet; cheap when nothing changed.
.venv/bin/python -m web.assets
export PATH="$PWD/.venv/bin:$PATH"
