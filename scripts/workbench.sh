#!/usr/bin/env bash
# Open the miglab workbench: JupyterLab on notebooks/ with the shipped data in data/.
#   * installs the package with its [dev] extras first if it is not importable
#     (or if JupyterLab is missing);
#   * binds 127.0.0.1 only; PORT=8888 by default (MIGLAB_PORT to change);
#   * opens a browser when there is one, otherwise prints the URL to open.
# Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PORT="${MIGLAB_PORT:-8888}"

if ! "$PY" -c "import miglab, jupyterlab, ipywidgets" 2>/dev/null; then
  echo "workbench: installing miglab with its [dev] extras..." >&2
  "$PY" -m pip install -q -e ".[dev]"
fi

BROWSER_FLAG="--no-browser"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && "$PY" -c "import webbrowser, sys; webbrowser.get(); sys.exit(0)" 2>/dev/null; then
  BROWSER_FLAG=""
fi
if [ -n "$BROWSER_FLAG" ]; then
  echo "workbench: no browser here; open the URL JupyterLab prints below (http://127.0.0.1:$PORT/lab...)." >&2
fi

ROOT_FLAG=""
[ "$(id -u)" -ne 0 ] || ROOT_FLAG="--allow-root"

exec "$PY" -m jupyterlab $BROWSER_FLAG $ROOT_FLAG \
  --ServerApp.ip=127.0.0.1 --ServerApp.port="$PORT" \
  --ServerApp.root_dir="$PWD/notebooks" \
  --LabApp.default_url="/lab/tree/01-quickstart.ipynb"
