#!/usr/bin/env bash
# Install damocles from this checkout. Safe to run again: what is already in place is left alone.
#
# From source (a Python environment in .venv, `damocles` linked onto the PATH):
#   ./install.sh                 runtime dependencies
#   ./install.sh --dev           plus what the tests and the frozen build need (pytest, pyinstaller)
#   ./install.sh --postgres      plus psycopg 3, for a manager whose state is on PostgreSQL
#                                ([Common.DB] Driver = "postgres"; the frozen executable carries it)
#   ./install.sh --bin-dir DIR   where to link `damocles` (default /usr/local/bin if writable, else ~/.local/bin)
#
# On a bare-metal node (the frozen executable, a home and config per role, a systemd unit):
#   ./install.sh --role manager|worker|post|all [options]
#   --prefix DIR       binary in DIR/bin, units in DIR/lib/systemd/system (default /usr/local)
#   --home DIR         role homes DIR/manager, DIR/worker, DIR/post (default /var/lib/damocles,
#                      or PREFIX/var/lib/damocles with another --prefix)
#   --binary PATH      install this frozen executable instead of dist/damocles (built when
#                      missing or older than the sources; needs Python 3.11+ and binutils)
#   --user NAME        the services' user, created where systemd runs (default damocles)
#   --manager URL      the manager's RPC address written into a new worker.toml or post.toml
#   --token TOKEN      the write token written into a new worker.toml or post.toml
#   --size SIZE        sector size a new worker.toml is planned for (default 32GiB)
#   --sealing-dir DIR  where a new worker.toml's sealing locations go (default HOME/worker/sealing)
#   --persist-dir DIR  the persist store a new worker.toml or post.toml reads and writes (default:
#                      the manager's persist-1 when the manager is on this host)
#                      A new worker.toml or post.toml is planned for this machine (damocles plan);
#                      where the planner cannot, the commented example is written and the reason said.
#   --no-systemd       install the unit files but do not enable them
#   --uninstall        remove the role's unit (and the binary once no role is left); homes,
#                      configs and sealed data are kept
#   --purge            with --uninstall: remove the role's home too (configs, databases, data)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
extras="" postgres=0 bin_dir="" role="" prefix="" home="" binary="" user="damocles" manager="" token=""
size="32GiB" sealing_dir="" persist_dir=""
no_systemd=0 uninstall=0 purge=0
need() { [ -n "${2:-}" ] || { echo "install.sh: $1 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) extras="[test,build]" ;;
    --postgres) postgres=1 ;;
    --bin-dir) need "$1" "${2:-}"; bin_dir="$2"; shift ;;
    --role) need "$1" "${2:-}"; role="$2"; shift ;;
    --prefix) need "$1" "${2:-}"; prefix="$2"; shift ;;
    --home) need "$1" "${2:-}"; home="$2"; shift ;;
    --binary) need "$1" "${2:-}"; binary="$2"; shift ;;
    --user) need "$1" "${2:-}"; user="$2"; shift ;;
    --manager) need "$1" "${2:-}"; manager="$2"; shift ;;
    --token) need "$1" "${2:-}"; token="$2"; shift ;;
    --size) need "$1" "${2:-}"; size="$2"; shift ;;
    --sealing-dir) need "$1" "${2:-}"; sealing_dir="$2"; shift ;;
    --persist-dir) need "$1" "${2:-}"; persist_dir="$2"; shift ;;
    --no-systemd) no_systemd=1 ;;
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "install.sh: $*" >&2; exit 1; }
changes=0
hint() { echo "  $*"; }
say() { echo "  $*"; case "$1" in unchanged*|absent*|kept*|skipped*) ;; *) changes=$((changes + 1)) ;; esac; }

find_python() {   # $PYTHON, or the newest python3.x on the PATH, if it is 3.11 or newer
  local p
  for p in ${PYTHON:-python3.13 python3.12 python3.11 python3}; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

make_venv() {     # make_venv EXTRAS: .venv with the package installed (editable)
  local py venv="$here/.venv" ver
  py="$(find_python)" || die "damocles needs Python 3.11 or newer to install from source or to build (Debian 12: apt-get install python3${PYTHON:+; PYTHON=$PYTHON is older or missing})"
  if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
      # Debian ships venv separately
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        ver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt-get update -qq && apt-get install -y -qq "python${ver}-venv" >/dev/null
        rm -rf "$venv"; "$py" -m venv "$venv"
      else
        die "'$py -m venv' failed; install the python3-venv package"
      fi
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here$1"
}

if [ "$postgres" = 1 ]; then
  [ -z "$role" ] || { echo "install.sh: --postgres is for a source install; the frozen executable --role installs carries the PostgreSQL driver already" >&2; exit 2; }
  extras="${extras:+${extras%]},postgres]}"; extras="${extras:-[postgres]}"
fi

if [ -z "$role" ]; then
  [ "$uninstall$purge" = 00 ] || { echo "install.sh: --uninstall and --purge go with --role (see --help)" >&2; exit 2; }
  make_venv "$extras"
  venv="$here/.venv"
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
  exit 0
fi

# ---- a bare-metal node -------------------------------------------------------------------------
case "$role" in
  manager|worker|post) roles="$role" ;;
  all) roles="manager worker post" ;;
  *) echo "install.sh: --role must be manager, worker, post or all, not '$role'" >&2; exit 2 ;;
esac
[ "$purge" = 0 ] || [ "$uninstall" = 1 ] || { echo "install.sh: --purge goes with --uninstall" >&2; exit 2; }
prefix="$(realpath -m "${prefix:-/usr/local}")"
if [ -z "$home" ]; then
  if [ "$prefix" = /usr/local ]; then home=/var/lib/damocles; else home="$prefix/var/lib/damocles"; fi
fi
home="$(realpath -m "$home")"
bin="$prefix/bin/damocles"
unit_dir="$prefix/lib/systemd/system"
is_root=0; [ "$(id -u)" = 0 ] && is_root=1

# systemd: units are enabled only where it runs as init (tests point the check elsewhere)
systemd=0 systemd_why=""
if [ "$no_systemd" = 1 ]; then systemd_why="--no-systemd was given"
elif ! [ -d "${DAMOCLES_SYSTEMD_RUN_DIR:-/run/systemd/system}" ] || ! command -v systemctl >/dev/null 2>&1; then
  systemd_why="systemd is not running on this host"
elif [ "$is_root" = 0 ]; then systemd_why="enabling units needs root"
else systemd=1
fi

writable() {      # writable DIR: DIR can be written, or its nearest existing parent takes a new file
  local d="$1" probe
  if [ -d "$d" ]; then [ -w "$d" ]; return; fi
  while ! [ -e "$d" ]; do d="$(dirname "$d")"; done
  [ -d "$d" ] && probe="$(mktemp -p "$d" .damocles-install.XXXXXX 2>/dev/null)" && rm -f "$probe"
}

# put SRC at DEST (mode MODE) unless it is already there byte for byte; says which
put() {
  local src="$1" dest="$2" mode="$3" what
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then say "unchanged  $dest"; return 1; fi
  if [ -e "$dest" ]; then what=updated; else what=installed; fi
  mkdir -p "$(dirname "$dest")"
  install -m "$mode" "$src" "$dest.new.$$" && mv -f "$dest.new.$$" "$dest"   # a running binary is replaced, not overwritten
  say "$what  $dest"
}

esc() { printf '%s' "$1" | sed -e 's/[#&\\]/\\&/g'; }   # a value made safe for a sed replacement
render() {        # render FILE: a packaged unit or config with this install's paths, user and manager
  local group="$user"
  id -gn "$user" >/dev/null 2>&1 && group="$(id -gn "$user")"
  local edits=(-e "s#/usr/local/bin/damocles#$(esc "$bin")#g" -e "s#/var/lib/damocles#$(esc "$home")#g"
               -e "s#^User=damocles\$#User=$(esc "$user")#" -e "s#^Group=damocles\$#Group=$(esc "$group")#")
  [ -z "$manager" ] || edits+=(-e "s#^rpc_client = .*#rpc_client = { addr = \"$(esc "$manager")\" }#")
  [ -z "$token" ] || edits+=(-e "s#^token = .*#token = \"$(esc "$token")\"#")
  [ -z "$local_persist" ] || edits+=(-e "s#\"/mnt/persist-1\"#\"$(esc "$local_persist")\"#")
  sed "${edits[@]}" "$1"
}

under_homes() {   # under_homes PATH...: true when one lies where ProtectHome= hides it
  local p; for p in "$@"; do case "$p" in /home|/home/*|/root|/root/*|/run/user|/run/user/*) return 0 ;; esac; done; return 1
}
render_unit() {   # render_unit ROLE: the role's unit, its ReadWritePaths= naming the directories this install knows
  local pdir="${persist_dir:-$local_persist}" sdir="" edits=()
  [ -z "$pdir" ] || pdir="$(realpath -m "$pdir")"
  [ -z "$sealing_dir" ] || sdir="$(realpath -m "$sealing_dir")"
  [ -z "$pdir" ] || edits+=(-e "s#-/mnt/persist-1#-$(esc "$pdir")#")
  if [ "$1" = worker ] && [ -n "$sdir" ]; then
    edits+=(-e "s#^\(ReadWritePaths=.*\)\$#\1 -$(esc "$sdir")#")
  fi
  if under_homes "$home" ${pdir:+"$pdir"} ${sdir:+"$sdir"}; then
    edits+=(-e "s#^ProtectHome=yes\$#ProtectHome=read-only#")     # ReadWritePaths= still opens its paths
  fi
  if [ ${#edits[@]} = 0 ]; then render "$here/packaging/damocles-$1.service"
  else render "$here/packaging/damocles-$1.service" | sed "${edits[@]}"
  fi
}

plan_config() {   # plan_config ROLE CFG MANAGER TOKEN: the planner's config for this host, or 1 with $why set
  local pdir="${persist_dir:-$local_persist}" out
  [ -n "$pdir" ] || { why="give --persist-dir to plan one for this machine"; return 1; }
  [ -n "$3" ] || { why="give --manager to plan one for this machine"; return 1; }
  local args=(plan --role "$1" --size "$size" --persist-dir "$pdir" --manager "$3" --out "$2")
  [ "$pdir" != "$local_persist" ] || args+=(--persist-name persist-1)
  [ -z "$4" ] || args+=(--token "$4")
  if [ "$1" = worker ]; then
    mkdir -p "${sealing_dir:-$home/worker/sealing}"
    args+=(--sealing-dir "${sealing_dir:-$home/worker/sealing}")
  fi
  if out="$("$bin" "${args[@]}" 2>&1)"; then return 0; fi
  rm -f "$2"
  why="the planner did not plan one for this machine: $(printf '%s\n' "$out" | tail -n 1)"
  return 1
}

unit_in_search_path() { case "$unit_dir" in /etc/systemd/system|/usr/local/lib/systemd/system|/lib/systemd/system|/usr/lib/systemd/system) return 0 ;; esac; return 1; }

# ---- uninstall ---------------------------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
  writable "$prefix" || die "cannot write to $prefix: run as root or pick a --prefix you own; nothing was removed"
  echo "damocles: uninstalling $role from $prefix"
  for r in $roles; do
    unit="damocles-$r.service"
    if [ "$systemd" = 1 ] && systemctl cat "$unit" >/dev/null 2>&1; then
      systemctl disable --now "$unit" >/dev/null 2>&1 && say "disabled   $unit (stopped, links removed)"
    fi
    if [ -f "$unit_dir/$unit" ]; then rm -f "$unit_dir/$unit"; say "removed    $unit_dir/$unit"; else say "absent     $unit_dir/$unit"; fi
    if [ "$purge" = 1 ] && [ -e "$home/$r" ]; then rm -rf "${home:?}/$r"; say "purged     $home/$r"
    elif [ -e "$home/$r" ]; then say "kept       $home/$r (config and data; --uninstall --purge removes it)"
    fi
  done
  [ "$systemd" = 1 ] && systemctl daemon-reload
  if ls "$unit_dir"/damocles-*.service >/dev/null 2>&1; then
    say "kept       $bin (still used by $(cd "$unit_dir" && echo damocles-*.service))"
  elif [ -L "$bin" ]; then say "kept       $bin (a link, not installed by --role)"
  elif [ -f "$bin" ]; then rm -f "$bin"; say "removed    $bin"
  else say "absent     $bin"
  fi
  if [ "$purge" = 1 ] && rmdir "$home" 2>/dev/null; then say "purged     $home"; fi
  [ "$changes" -gt 0 ] || echo "damocles: nothing to remove"
  exit 0
fi

# ---- install: check everything first, so that a refusal leaves nothing half done --------------
for d in "$prefix" "$home"; do
  writable "$d" || die "cannot write to $d (or the directory above it): run as root, or pick a --prefix/--home you own; nothing was installed"
done
build=0
if [ -n "$binary" ]; then
  [ -f "$binary" ] && [ -x "$binary" ] || die "--binary $binary is not an executable file; nothing was installed"
elif ! [ -x "$here/dist/damocles" ] || [ -n "$(cd "$here" && find appliance build/build.sh build/damocles.spec build/launcher.py \
          pyproject.toml -newer dist/damocles -type f \( -name '*.py' -o -name '*.spec' -o -name '*.sh' -o -name '*.toml' \) -print -quit)" ]; then
  build=1   # no dist/damocles, or sources newer than it
  find_python >/dev/null || die "building the executable needs Python 3.11 or newer (Debian 12: apt-get install python3; or set PYTHON, or pass --binary); nothing was installed"
  if ! command -v objdump >/dev/null 2>&1; then
    if [ "$is_root" = 1 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq binutils >/dev/null
    else
      die "building the executable needs binutils (objdump): apt-get install binutils, or pass --binary; nothing was installed"
    fi
  fi
fi
if [ "$build" = 1 ]; then
  echo "damocles: building dist/damocles (PyInstaller; a minute or two)"
  make_venv "[build]"
  "$here/build/build.sh" >/dev/null
fi
src="${binary:-$here/dist/damocles}"
"$src" --version --json 2>/dev/null | grep -q '"frozen": true' || die "$src is not the frozen damocles executable (its --version --json does not say frozen); nothing was installed"

echo "damocles: installing $role into $prefix (homes under $home)"
put "$src" "$bin" 0755 || true
if [ "$systemd" = 1 ] && [ "$user" != root ]; then
  if id -u "$user" >/dev/null 2>&1; then say "unchanged  user $user"
  else useradd --system --user-group --home-dir "$home" --no-create-home --shell /usr/sbin/nologin "$user"; say "created    user $user"
  fi
fi

new_home() {      # new_home DIR: create a role home; the services' user owns it
  mkdir -p "$1"
  if [ "$systemd" = 1 ] && id -u "$user" >/dev/null 2>&1; then chown "$user:$(id -gn "$user")" "$home" "$1"; fi
}
own() { if [ "$systemd" = 1 ] && id -u "$user" >/dev/null 2>&1; then chown -R "$user:$(id -gn "$user")" "$1"; fi; }

local_persist=""
case " $roles " in *" manager "*) local_persist="$home/manager/persist-1" ;; esac
changed_units=0
for r in $roles; do
  rhome="$home/$r"
  case "$r" in
    manager)
      if [ -f "$rhome/sector-manager.cfg" ]; then say "unchanged  $rhome/sector-manager.cfg (kept as it is)"
      elif [ -f "$rhome/manager.toml" ]; then say "unchanged  $rhome/manager.toml (kept as it is)"
      else
        new_home "$rhome"
        "$bin" manager init --home "$rhome" >/dev/null
        own "$rhome"
        say "created    $rhome (damocles manager init: sector-manager.cfg, secret, persist-1)"
      fi ;;
    worker|post)
      cfg="$rhome/$r.toml"
      if [ -f "$cfg" ]; then say "unchanged  $cfg (kept as it is)"
      else
        new_home "$rhome"
        m="$manager" t="$token"
        if [ -n "$local_persist" ] && [ -z "$manager$token" ]; then   # the manager is on this host
          m="http://127.0.0.1:1789"
          t="$("$bin" manager token --home "$home/manager" --perm write --name "$(uname -n)-$r")"
        fi
        why=""
        if plan_config "$r" "$cfg" "$m" "$t"; then
          how="planned for this machine at $size ($bin plan --explain says why)"
        else
          (umask 077; manager="$m" token="$t"; render "$here/packaging/$r.toml" > "$cfg")   # 0600 from the start
          how="the commented example: $why"
        fi
        chmod 0600 "$cfg"          # it holds a token
        own "$rhome"
        say "created    $cfg ($how)"
      fi ;;
  esac
  # the unit keeps /var/tmp read-only but for the SDR parent cache, which must exist to be writable
  parents="${DAMOCLES_PARENTS_DIR:-/var/tmp/filecoin-parents}"      # tests point it elsewhere
  if [ "$r" = worker ] && [ "$systemd" = 1 ] && ! [ -d "$parents" ]; then
    mkdir -p "$parents" && own "$parents" && say "created    $parents (the SDR parent cache)"
  fi
  tmp="$(mktemp)"
  render_unit "$r" > "$tmp"
  if put "$tmp" "$unit_dir/damocles-$r.service" 0644; then changed_units=1; fi
  rm -f "$tmp"
done

unit_ref() { if unit_in_search_path; then echo "damocles-$1.service"; else echo "$unit_dir/damocles-$1.service"; fi; }
if [ "$systemd" = 1 ]; then
  [ "$changed_units" = 0 ] || systemctl daemon-reload
  for r in $roles; do
    if systemctl is-enabled --quiet "damocles-$r.service" 2>/dev/null; then say "unchanged  damocles-$r.service enabled"
    else systemctl enable --quiet "$(unit_ref "$r")"; say "enabled    damocles-$r.service"
    fi
  done
else
  say "skipped    enabling the units: $systemd_why"
fi

echo "damocles: $("$bin" --version)"
if [ "$changes" = 0 ]; then echo "damocles: unchanged: everything was already in place"; else echo "damocles: $changes changes"; fi
echo "next:"
addr_hint="the manager's address and a write token"
[ -z "$local_persist" ] || addr_hint="the manager on this host and a token minted for it are filled in"
case ":$PATH:" in *":$prefix/bin:"*) ;; *) hint "add $prefix/bin to the PATH (or run $bin)" ;; esac
for r in $roles; do
  case "$r" in
    manager) hint "manager: edit $home/manager/sector-manager.cfg (RPC Listen, miners, persist stores; see packaging/sector-manager.cfg);"
             hint "         mint a token per worker and prover: $bin manager token --home $home/manager --perm write --name HOST" ;;
    worker)  hint "worker:  edit $home/worker/worker.toml ($addr_hint, one [[sealing_thread]] per local store, [[attached]] persist store, processors)" ;;
    post)    hint "post:    edit $home/post/post.toml ($addr_hint, [[attached]] persist stores, processors)" ;;
  esac
  if [ "$systemd" = 1 ]; then hint "         then: systemctl start damocles-$r; journalctl -u damocles-$r -f"
  else
    case "$r" in
      manager) hint "         then run it: $bin manager run --home $home/manager" ;;
      *) hint "         then run it: $bin $r run -c $home/$r/$r.toml" ;;
    esac
  fi
done
