#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: unit and property
# tests, real-QEMU judge tests, nbval on the notebooks, the browser test and a
# bounded fuzz run.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
ruff check miglab tests scripts benchmarks fuzz
ruff format --check miglab tests scripts benchmarks fuzz
mypy
python -m pytest -n 2 --dist loadgroup "$@"
