#!/usr/bin/env bash
# mypy over the three layers. They install as kinsight.* by a folder mapping that mypy cannot
# follow, so it checks them through a temporary kinsight/ folder of symlinks.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/kinsight"
for layer in engine indexers api; do ln -s "$root/$layer" "$tree/kinsight/$layer"; done
cd "$tree"
exec "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" \
    -p kinsight.engine -p kinsight.indexers -p kinsight.api
