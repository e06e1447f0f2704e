#!/usr/bin/env bash
# Command 2 of the README: set up, lint (ruff, mypy), then run the tests (slow and gpu skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
bash scripts/typecheck.sh
exec .venv/bin/python -m pytest "$@"
