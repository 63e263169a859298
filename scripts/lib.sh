# Shared helpers for the setup scripts (sourced by setup.sh, workbench.sh, install-*.sh).
#   run_root CMD...     run CMD as root (sudo when not root)
#   apt_install PKG...  install the Debian packages that are missing (one apt-get update first)
#   apt_install_lean PKG...  the same, without their recommended packages
#   ensure_venv EXTRA   make the project virtual environment .venv (never pip into the system
#                       Python: Debian 12 refuses it, PEP 668) and install .[EXTRA] into it;
#                       re-installs only when pyproject.toml changed
#   step NAME CMD...    run CMD and print how long it took
# Everything is idempotent: a second run only checks.
export DEBIAN_FRONTEND=noninteractive
MIGLAB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MIGLAB_CACHE="${MIGLAB_CACHE:-/var/cache/miglab}"
VENV="${MIGLAB_VENV:-$MIGLAB_ROOT/.venv}"

run_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_apt_updated=""
apt_install() {
  _apt_install "" "$@"
}

# apt_install_lean PKG...: the same without recommended packages.
apt_install_lean() {
  _apt_install --no-install-recommends "$@"
}

_apt_install() {
  local flags="$1" missing=() p
  shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$_apt_updated" ]; then run_root apt-get update -qq; _apt_updated=1; fi
  run_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $flags "${missing[@]}" >/dev/null
}

step() {
  local name="$1" t0=$SECONDS
  shift
  "$@"
  echo "setup: $name: $((SECONDS - t0)) s" >&2
}

ensure_venv() {
  local extra="$1" stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    # Debian's python3 needs python3-venv for ensurepip; a python3 of its own (pyenv) has it.
    python3 -m venv --help >/dev/null 2>&1 && python3 -c "import ensurepip" 2>/dev/null \
      || apt_install python3-venv
    python3 -m venv "$VENV"
  fi
  stamp="$VENV/.miglab-installed"
  want="$extra $(sha256sum "$MIGLAB_ROOT/pyproject.toml" | cut -c1-16) $MIGLAB_ROOT"
  # The dev extra includes everything the notebook extra has.
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
    && ! { [ "$extra" = notebook ] && [ "$(cat "$stamp" 2>/dev/null)" = "dev ${want#* }" ]; }; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "$MIGLAB_ROOT[$extra]"
    echo "$want" >"$stamp"
  fi
}
