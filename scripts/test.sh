#!/usr/bin/env bash
# Install with the test extras (funasr as the parity oracle) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m pytest tests -q -p no:cacheprovider
