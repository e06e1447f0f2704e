#!/usr/bin/env bash
# Command 2 of the README: set up, lint, then run the test suite (slow and gpu tests skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
