#!/usr/bin/env bash
# Create .venv (once) and install kinsight with every extra, editable. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# A plain `torch` requirement: on machines with a local wheel cache/constraint this stays offline.
.venv/bin/python -m pip install --quiet -e '.[all]'
