#!/usr/bin/env bash
# Build the single executable dist/damocles with PyInstaller (installed by ./install.sh --dev).
# Needs Python 3.11+ with the package and PyInstaller (the .venv, or $PYTHON) and binutils
# (PyInstaller reads shared libraries with objdump). The binary records its build time, commit
# and the glibc it was built against (`damocles --version --json`); SOURCE_DATE_EPOCH, when
# set, fixes the build time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
cd "$root"

die() { echo "build.sh: $*" >&2; exit 1; }
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
  || die "$py is not Python 3.11 or newer (run ./install.sh --dev first, or set PYTHON)"
"$py" -c 'import PyInstaller, appliance' 2>/dev/null \
  || die "$py lacks PyInstaller or the package: run ./install.sh --dev first"
"$py" -c 'import psycopg; psycopg.pq.version()' 2>/dev/null \
  || die "$py lacks psycopg 3 with its libpq (the executable's PostgreSQL driver): run ./install.sh --dev first"
command -v objdump >/dev/null 2>&1 || die "objdump not found: install binutils (apt-get install binutils)"

# what `damocles --version --json` reports; bundled by build/damocles.spec
mkdir -p "$root/build/out"
commit=null
if git -C "$root" rev-parse HEAD >/dev/null 2>&1; then
  sha="$(git -C "$root" rev-parse HEAD)"
  [ -z "$(git -C "$root" status --porcelain --untracked-files=no -- appliance build pyproject.toml)" ] || sha="$sha-dirty"
  commit="\"$sha\""
fi
built="$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)"
glibc="$("$py" -c 'import platform; print(platform.libc_ver()[1])')"
printf '{"build_time": "%s", "commit": %s, "build_glibc": "%s"}\n' "$built" "$commit" "$glibc" > "$root/build/out/build_info.json"

start=$(date +%s)
"$py" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$root/dist" --workpath "$root/build/work" "$root/build/damocles.spec"
echo "build.sh: dist/damocles, $(du -m "$root/dist/damocles" | cut -f1) MiB, built in $(( $(date +%s) - start )) s"
"$root/dist/damocles" --version --json
