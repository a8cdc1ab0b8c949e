#!/usr/bin/env bash
# Set up, index corpus/ and start the service (or run a search until the API exists).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/newsdesk index corpus/
if .venv/bin/newsdesk serve --help >/dev/null 2>&1; then
  exec .venv/bin/newsdesk serve "$@"
else
  exec .venv/bin/newsdesk search "Which company did Daimler team up with for Denza?"
fi
