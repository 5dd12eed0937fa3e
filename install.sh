#!/usr/bin/env bash
# Bootstrap damocles from this checkout: a Python environment in .venv with the package
# installed (editable), and `damocles` linked onto the PATH. Safe to run again: it reuses what
# is there and only installs what is missing or changed.
#
#   ./install.sh            runtime dependencies
#   ./install.sh --dev      plus what the tests and the frozen build need (pytest, pyinstaller)
#   ./install.sh --bin-dir DIR   where to link `damocles` (default /usr/local/bin if writable, else ~/.local/bin)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
extras=""
bin_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) extras="[test,build]" ;;
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

find_python() {
  for p in python3.13 python3.12 python3.11 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

py="$(find_python)" || {
  echo "install.sh: damocles needs Python 3.11 or newer (Debian 12: apt-get install python3)" >&2; exit 1; }

venv="$here/.venv"
if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    # Debian ships venv separately
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      ver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      apt-get update -qq && apt-get install -y -qq "python${ver}-venv" >/dev/null
      rm -rf "$venv"; "$py" -m venv "$venv"
    else
      echo "install.sh: '$py -m venv' failed; install the python3-venv package" >&2; exit 1
    fi
  fi
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here$extras"

if [ -z "$bin_dir" ]; then
  if [ -w /usr/local/bin ]; then bin_dir=/usr/local/bin; else bin_dir="$HOME/.local/bin"; fi
fi
mkdir -p "$bin_dir"
ln -sf "$venv/bin/damocles" "$bin_dir/damocles"
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) echo "install.sh: add $bin_dir to your PATH to run 'damocles'" >&2 ;;
esac
echo "damocles $("$venv/bin/damocles" --version | cut -d' ' -f2-) installed in $venv, linked as $bin_dir/damocles"
