#!/usr/bin/env bash
# Installs the browser test's npm packages (puppeteer-core, pinned by tests/web/package-lock.json)
# into tests/web/node_modules. No browser download: the test drives Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/../tests/web"
if [ -d node_modules/puppeteer-core ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "web-test-deps: up to date"
  exit 0
fi
PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund
