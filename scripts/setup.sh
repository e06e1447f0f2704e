#!/usr/bin/env bash
# Create .venv (once) and install kinsight with every extra, editable. Safe to re-run.
# --bench also installs the baselines the benchmarks compare with (the bench extra: PyOD).
# --ray also installs Ray, for encoding on Ray workers (kinsight ingest --workers N / --ray ADDR).
# pip's own output (pages of notes about package indexes and editable builds) goes to
# .venv/install.log; it is shown only when the install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
extras=all
for arg in "$@"; do
    case "$arg" in
        --bench) extras="$extras,bench" ;;
        --ray) extras="$extras,ray" ;;
        *) echo "usage: bash scripts/setup.sh [--bench] [--ray]" >&2; exit 2 ;;
    esac
done
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv"
    "$PYTHON" -m venv .venv
fi
echo "installing kinsight and its dependencies into .venv (log: .venv/install.log)"
log=.venv/install.log
# A plain `torch` requirement: on machines with a local wheel cache/constraint this stays offline.
if ! { .venv/bin/python -m pip install --quiet --upgrade pip \
        && .venv/bin/python -m pip install --quiet -e ".[$extras]"; } > "$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "error: the install failed; the whole log is in $log" >&2
    exit 1
fi
