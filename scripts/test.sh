#!/usr/bin/env bash
# Command 2 of the README: set up (with headless Chromium for the browser tests), lint (ruff,
# mypy), then run the tests (slow and gpu skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/browser.sh
.venv/bin/ruff check .
bash scripts/typecheck.sh
# Where the browser could be installed, a browser test that cannot start is a failure, not a skip.
if [ -x /usr/bin/chromium ]; then export KINSIGHT_REQUIRE_BROWSER="${KINSIGHT_REQUIRE_BROWSER:-1}"; fi
exec .venv/bin/python -m pytest "$@"
