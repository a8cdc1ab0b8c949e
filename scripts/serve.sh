#!/usr/bin/env bash
# Set up, index corpus/ and start the HTTP API; it prints the URL to open.
# Extra arguments go to `newsdesk serve` (e.g. --port 9000, --host 0.0.0.0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/newsdesk index corpus/
exec .venv/bin/newsdesk serve "$@"
