#!/bin/sh
# What the site's browser test (tests/test_site.py) needs beyond Python: Debian's chromium and chromium-driver
# (apt-get; root or sudo), and onnxruntime-web from npm (docs/demo/node_modules, from package-lock.json).
# `make test` and `make docs` run this; each step is skipped when already done.
set -e
cd "$(dirname "$0")/../demo"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "${1:-}" != "--npm-only" ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium chromium-driver
  fi
fi
if [ ! -f node_modules/onnxruntime-web/dist/ort.wasm.min.js ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
