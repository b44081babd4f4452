#!/usr/bin/env bash
# Build the local images that the tests and the README walkthrough use. No registry is reachable
# from here, so nothing is pulled: every image is made from files on this machine or from Debian's
# package mirror.
#
#   galley-test/busybox:latest  static busybox in a FROM-scratch image (images/busybox/Dockerfile)
#   galley-test/nginx:latest    Debian bookworm minbase + nginx-light, nginx in the foreground on :80
#   galley-test/redis:latest    the same root filesystem (one shared layer), redis-server on :6379
#
# An image is skipped when it exists and carries the org.galley.recipe label of the current recipe
# (a hash of what goes into it: images/busybox/, images/debian/mkrootfs.sh, the image config
# below), so editing a recipe rebuilds just that image. --force rebuilds regardless.
#
# Usage: images/build.sh [--force] [--dry-run] [busybox] [debian]   (default: both)
# Normally run through `scripts/setup --test-images`. Building nginx/redis needs root (debootstrap).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$GALLEY_ROOT"

BUSYBOX_IMAGE=galley-test/busybox:latest
NGINX_IMAGE=galley-test/nginx:latest
REDIS_IMAGE=galley-test/redis:latest
LABEL=org.galley.recipe

COMMON_CHANGES=('ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
NGINX_CHANGES=('CMD ["nginx", "-g", "daemon off;"]' 'EXPOSE 80')
REDIS_CHANGES=(
  'CMD ["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", "--appendonly", "no"]'
  'EXPOSE 6379' 'WORKDIR /data'
)

# The legacy builder works against any engine, and needs no buildx plugin.
export DOCKER_BUILDKIT=0

force=0 targets=()
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --dry-run) export GALLEY_DRY_RUN=1 ;;
    busybox | debian) targets+=("$arg") ;;
    *) die "unknown argument: $arg (usage: images/build.sh [--force] [--dry-run] [busybox] [debian])" ;;
  esac
done
[ "${#targets[@]}" -gt 0 ] || targets=(busybox debian)

take_setup_lock

# ----------------------------------------------------------------------------------------- utils

image_label() { docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }
up_to_date() { [ "$force" = 0 ] && [ "$(image_label "$1")" = "$2" ]; }

# After retagging, remove the image the tag used to name unless something still uses it.
drop_replaced() {
  local old=$1 new
  new=$(image_id "$2")
  [ -n "$old" ] && [ "$old" != "$new" ] || return 0
  [ "$(docker image inspect -f '{{len .RepoTags}}' "$old" 2>/dev/null)" = 0 ] || return 0
  docker image rm "$old" >/dev/null 2>&1 || true
}

is_static() {
  local out
  [ -f "$1" ] && [ -x "$1" ] || return 1
  out=$(LC_ALL=C ldd "$1" 2>&1 || true)
  case "$out" in *"not a dynamic executable"* | *"statically linked"*) return 0 ;; esac
  return 1
}

# ---------------------------------------------------------------------------------------- busybox

# Print the path of a statically linked busybox: the host's if it has one, otherwise Debian's
# busybox-static package unpacked under images/build/ (the host's packages are left alone).
find_static_busybox() {
  local b dir="$GALLEY_BUILD_DIR/busybox-static"
  for b in /bin/busybox /usr/bin/busybox; do
    if is_static "$b"; then
      echo "$b"
      return
    fi
  done
  { have apt-get && have dpkg-deb; } ||
    die "no static busybox at /bin/busybox. Fix: install busybox-static (Debian/Ubuntu: sudo apt-get install busybox-static)"
  rm -rf "$dir"
  mkdir -p "$dir"
  say "fetching Debian's busybox-static package (host busybox is missing or not static)"
  if ! (cd "$dir" && apt-get download busybox-static >/dev/null 2>&1); then
    can_root || die "apt-get download busybox-static failed and no root to run apt-get update.
  Fix: sudo apt-get update && sudo apt-get install busybox-static"
    quiet as_root apt-get update
    (cd "$dir" && quiet apt-get download busybox-static)
  fi
  dpkg-deb -x "$dir"/busybox-static_*.deb "$dir/root"
  for b in "$dir/root/bin/busybox" "$dir/root/usr/bin/busybox"; do
    if is_static "$b"; then
      echo "$b"
      return
    fi
  done
  die "busybox-static did not contain a static busybox (looked in $dir/root)"
}

busybox_recipe() {
  {
    cat images/busybox/Dockerfile
    find images/busybox/rootfs -type f | LC_ALL=C sort | while read -r f; do echo "$f" && cat "$f"; done
  } | sha256sum | cut -c1-16
}

build_busybox() {
  local hash t0 bin ctx old
  hash=$(busybox_recipe)
  up_to_date "$BUSYBOX_IMAGE" "$hash" && return 0
  if dry_run; then
    say "[dry-run] would build $BUSYBOX_IMAGE"
    return 0
  fi
  t0=$(now)
  bin=$(find_static_busybox)
  ctx="$GALLEY_BUILD_DIR/busybox"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -R images/busybox/. "$ctx/"
  cp "$bin" "$ctx/busybox"
  chmod 755 "$ctx/busybox"
  chmod -R go-w,a+rX "$ctx/rootfs"
  old=$(image_id "$BUSYBOX_IMAGE")
  quiet docker build --label "$LABEL=$hash" -t "$BUSYBOX_IMAGE" "$ctx"
  rm -rf "$ctx" "$GALLEY_BUILD_DIR/busybox-static"
  drop_replaced "$old" "$BUSYBOX_IMAGE"
  say "built $BUSYBOX_IMAGE in $(elapsed "$t0") ($(image_mb "$BUSYBOX_IMAGE"))"
}

# ---------------------------------------------------------------------------------- nginx, redis

debian_recipe() {
  {
    cat images/debian/mkrootfs.sh
    printf '%s\n' "${COMMON_CHANGES[@]}" "${NGINX_CHANGES[@]}" "${REDIS_CHANGES[@]}"
    declare -f import_image
  } | sha256sum | cut -c1-16
}

# import_image TAR IMAGE HASH CHANGE...: one image from the root tarball, with its own config.
import_image() {
  local tar=$1 image=$2 hash=$3 old c args=()
  shift 3
  for c in "${COMMON_CHANGES[@]}" "$@" "LABEL $LABEL=$hash"; do args+=(--change "$c"); done
  old=$(image_id "$image")
  quiet docker import "${args[@]}" --message "galley test image (images/build.sh)" "$tar" "$image"
  drop_replaced "$old" "$image"
}

build_debian() {
  local hash t0 t1 work tar steps
  hash=$(debian_recipe)
  if up_to_date "$NGINX_IMAGE" "$hash" && up_to_date "$REDIS_IMAGE" "$hash"; then return 0; fi
  can_root || die "building $NGINX_IMAGE and $REDIS_IMAGE needs root (debootstrap, chroot).
  Fix: sudo $GALLEY_ROOT/images/build.sh   (or, with passwordless sudo: GALLEY_SUDO=1 scripts/setup --test-images)"
  have debootstrap || apt_install debootstrap
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || apt_install debian-archive-keyring
  if dry_run; then
    say "[dry-run] would build $NGINX_IMAGE and $REDIS_IMAGE (debootstrap, docker import)"
    return 0
  fi

  work="$GALLEY_BUILD_DIR/debian"
  tar="$work/rootfs.tar"
  say "building $NGINX_IMAGE and $REDIS_IMAGE from a Debian bookworm minbase root (~1 min) ..."
  t0=$(now)
  # shellcheck disable=SC2064 # expand $work now: it is local
  trap "as_root rm -rf $(printf %q "$work")" EXIT
  trap 'exit 130' INT TERM
  quiet as_root images/debian/mkrootfs.sh "$work" "$GALLEY_BUILD_DIR/debs" "$tar" ||
    die "could not make the Debian root for $NGINX_IMAGE/$REDIS_IMAGE (see above). debootstrap needs
  ${GALLEY_DEBIAN_MIRROR:-http://deb.debian.org/debian} (set GALLEY_DEBIAN_MIRROR to use another mirror)."
  steps=$(cat "$tar.timings" 2>/dev/null || true)
  t1=$(now)
  import_image "$tar" "$NGINX_IMAGE" "$hash" "${NGINX_CHANGES[@]}"
  import_image "$tar" "$REDIS_IMAGE" "$hash" "${REDIS_CHANGES[@]}"
  as_root rm -rf "$work"
  trap - EXIT INT TERM
  say "built $NGINX_IMAGE and $REDIS_IMAGE in $(elapsed "$t0") (${steps:+$steps, }import $(elapsed "$t1")); one shared $(image_mb "$NGINX_IMAGE") layer"
}

# ------------------------------------------------------------------------------------------ main

if ! dry_run && ! { have docker && docker info >/dev/null 2>&1; }; then
  die "no Docker engine answers; run scripts/setup first"
fi
for t in "${targets[@]}"; do "build_$t"; done
