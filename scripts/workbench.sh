#!/usr/bin/env bash
# Open the miglab workbench: JupyterLab on a working copy of the tutorials, with the shipped
# data in data/.
#   * makes the project virtual environment .venv with the light [notebook] extra if needed
#     (root or sudo only to install python3-venv on a Debian without it);
#   * serves out/workbench/ (a copy of notebooks/ made on first start), so autosave never
#     rewrites the tracked notebooks; delete that folder to start over;
#   * binds 127.0.0.1 only; port 8888 by default, or the next free one when 8888 is taken;
#     MIGLAB_PORT=N insists on port N (and fails when it is taken); prints the URL, token
#     included, that JupyterLab really serves, and opens a browser when there is one.
# Stop it with Ctrl-C.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$MIGLAB_ROOT"
PORT="${MIGLAB_PORT:-8888}"
# Jupyter moves to a free port only when the user named none; the URL below is the one it took.
RETRIES=50
[ -z "${MIGLAB_PORT:-}" ] || RETRIES=0

ensure_venv notebook
WORK="$MIGLAB_ROOT/out/workbench"
if [ ! -d "$WORK" ]; then
  mkdir -p "$WORK"
  cp notebooks/*.ipynb "$WORK"/
fi
# The notebooks open data files by relative path (../data/...): give the copy the same view.
[ -e "$MIGLAB_ROOT/out/data" ] || ln -s ../data "$MIGLAB_ROOT/out/data"

BROWSER_FLAG="--no-browser"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && "$VENV/bin/python" -c "import webbrowser; webbrowser.get()" 2>/dev/null; then
  BROWSER_FLAG=""
fi
ROOT_FLAG=""
[ "$(id -u)" -ne 0 ] || ROOT_FLAG="--allow-root"

LOG="$(mktemp)"
trap 'kill "$LAB" 2>/dev/null; wait "$LAB" 2>/dev/null; rm -f "$LOG"' EXIT INT TERM
"$VENV/bin/python" -m jupyterlab $BROWSER_FLAG $ROOT_FLAG \
  --ServerApp.ip=127.0.0.1 --ServerApp.port="$PORT" --ServerApp.port_retries="$RETRIES" \
  --ServerApp.root_dir="$WORK" \
  --LabApp.default_url="/lab/tree/01-quickstart.ipynb" >"$LOG" 2>&1 &
LAB=$!
# Print the URL Jupyter itself reports (with its token), once it is serving.
for _ in $(seq 1 120); do
  url=$(grep -oE "http://127\.0\.0\.1:[0-9]+/lab[^ ]*" "$LOG" | head -1 || true)
  [ -n "$url" ] && break
  kill -0 "$LAB" 2>/dev/null || { cat "$LOG" >&2; echo "workbench: JupyterLab did not start (is port $PORT taken? set another MIGLAB_PORT)" >&2; exit 1; }
  sleep 0.5
done
[ -n "$url" ] || { cat "$LOG" >&2; echo "workbench: JupyterLab printed no URL" >&2; exit 1; }
echo "workbench: open $url" >&2
tail -f -n +1 "$LOG" >&2 &
wait "$LAB"
