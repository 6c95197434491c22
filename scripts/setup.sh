#!/usr/bin/env bash
# Create .venv (git-ignored) with the CPU torch wheel first, then this package with the given extras.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-modelscope}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q "torch==2.13.0"   # pinned first: an unpinned torch would pull the CUDA wheels
.venv/bin/pip install -q -e ".[${EXTRAS}]"
