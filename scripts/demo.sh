#!/usr/bin/env bash
# Command 1 of the README: set up, then index the bundled Debian sample and search it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/kinsight demo "$@"
