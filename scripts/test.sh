#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (unit, sim, integration, system, compat).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
