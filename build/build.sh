#!/usr/bin/env bash
# Build the single executable dist/damocles with PyInstaller (installed by ./install.sh --dev).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
cd "$root"
"$py" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$root/dist" --workpath "$root/build/work" "$root/build/damocles.spec"
"$root/dist/damocles" --version --json
