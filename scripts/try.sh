#!/usr/bin/env bash
# Install dcosd and start a one-machine cluster with a sample web service.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
echo "dcosd installed in $(pwd)/.venv — the CLI is $(pwd)/.venv/bin/dcosd"
exec .venv/bin/dcosd up --sample
