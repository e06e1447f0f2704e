#!/usr/bin/env bash
# Headless Chromium and ChromeDriver for the browser tests (Debian packages), installed when
# missing and when we may (root). Elsewhere the browser tests say what to install and skip.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing chromium and chromium-driver for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium chromium-driver > /dev/null \
        || { apt-get update -q > /dev/null && apt-get install -y -q chromium chromium-driver > /dev/null; }
else
    echo "note: chromium/chromedriver missing and not root: browser tests will be skipped" >&2
fi
