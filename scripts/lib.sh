# shellcheck shell=bash
# Helpers shared by scripts/setup and images/build.sh. Source this file; don't run it.
#
# Conventions: progress and errors go to stderr; commands that produce noise run through `quiet`,
# which shows their output only when they fail. GALLEY_DRY_RUN=1 makes every command that changes
# the system (apt-get, starting dockerd) print what it would do instead.

GALLEY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
GALLEY_BUILD_DIR="$GALLEY_ROOT/images/build" # gitignored: work dirs, .deb cache, logs, lock

# Non-root shells on Debian lack the sbin directories, where dockerd and debootstrap live.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;; esac
export PATH
export DEBIAN_FRONTEND=noninteractive

_galley_prog=$(basename "$0")

say() { printf '%s: %s\n' "$_galley_prog" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$_galley_prog" "$*" >&2
  exit 1
}
have() { # an executable on PATH (bash's `command -v` also reports non-executable files)
  local p
  p=$(command -v -- "$1" 2>/dev/null) || return 1
  case "$p" in /*) [ -x "$p" ] ;; *) return 0 ;; esac
}
is_root() { [ "$(id -u)" -eq 0 ]; }
dry_run() { [ "${GALLEY_DRY_RUN:-0}" = 1 ]; }
now() { date +%s.%N; }
# elapsed START -> "12.3s"
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# Root is used directly when we are root. Otherwise only passwordless sudo, and only where asked
# for (GALLEY_SUDO=1) or in CI (CI=true): a developer's machine is never changed behind their back.
sudo_allowed() {
  [ "${GALLEY_SUDO:-}" = 1 ] && return 0
  [ "${CI:-}" = true ] && [ "${GALLEY_SUDO:-}" != 0 ]
}
can_root() {
  is_root && return 0
  sudo_allowed && have sudo && sudo -n true 2>/dev/null
}
as_root() {
  if dry_run; then
    say "[dry-run] would run as root: $*"
    return 0
  fi
  if is_root; then
    "$@"
  else
    sudo -n env "PATH=$PATH" DEBIAN_FRONTEND=noninteractive "$@"
  fi
}

# quiet CMD...: run CMD with its output captured; on failure print the output's tail and the log.
quiet() {
  if dry_run; then
    "$@"
    return
  fi
  local log rc=0 dir="$GALLEY_BUILD_DIR/logs"
  mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ] || dir=${TMPDIR:-/tmp}
  log=$(mktemp "$dir/galley-$(basename -- "$1")-$(basename -- "${2:-x}").XXXXXX")
  "$@" </dev/null >"$log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    rm -f "$log"
    return 0
  fi
  printf '%s: command failed (exit %s): %s\n' "$_galley_prog" "$rc" "$*" >&2
  tail -n 40 "$log" | sed 's/^/    | /' >&2
  printf '%s: full output: %s\n' "$_galley_prog" "$log" >&2
  return "$rc"
}

_galley_apt_updated=0
# apt_install PKG...: install Debian packages (needs root). apt-get update runs once per process.
apt_install() {
  have apt-get || die "apt-get not found; install these with your package manager: $*"
  can_root || die "need root to install: $*  (run: sudo apt-get install -y $*)"
  if [ "$_galley_apt_updated" = 0 ]; then
    say "apt-get update"
    quiet as_root apt-get update
    _galley_apt_updated=1
  fi
  say "apt-get install -y $*"
  quiet as_root apt-get install -y "$@"
}

# Hold an exclusive lock for the rest of the process so two setups (two terminals, or an editor's
# test runner next to CI) don't build the same image or pip-install into the same venv at once.
# The lock is on fd 9; anything left running in the background must be started with 9>&-.
take_setup_lock() {
  have flock || return 0
  [ -n "${GALLEY_SETUP_LOCKED:-}" ] && return 0 # a parent already holds it
  local lock="$GALLEY_BUILD_DIR/setup.lock"
  mkdir -p "$GALLEY_BUILD_DIR" 2>/dev/null || true
  # flock works on a read-only fd too: a lock file left by a root run doesn't lock others out.
  if ! { exec 9>>"$lock"; } 2>/dev/null; then
    { exec 9<"$lock"; } 2>/dev/null || return 0 # cannot lock at all: carry on unlocked
  fi
  if ! flock -n 9; then
    say "waiting for another scripts/setup to finish (lock: $lock)"
    flock -w 3600 9 || die "timed out waiting for $lock"
  fi
  export GALLEY_SETUP_LOCKED=1
}
