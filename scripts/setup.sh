#!/usr/bin/env bash
# Create .venv and install newsdesk with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first and pinned: pip then takes the CPU wheel from local disk instead of
# pulling a multi-GB CUDA build for sentence-transformers.
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "is ignored" || true
# Browser tests drive Debian's Chromium (Playwright's own browser download cannot work offline).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
    || echo "warning: could not install chromium; the browser tests will fail" >&2
fi
.venv/bin/python -c "import torch, faiss, bm25s, sentence_transformers, indexer" \
  || { echo "setup failed: see pip output above" >&2; exit 1; }
