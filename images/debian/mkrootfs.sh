#!/usr/bin/env bash
# Make the Debian root filesystem behind galley-test/nginx and galley-test/redis, as a tarball.
# Run as root (debootstrap and chroot need it); images/build.sh calls this and imports the result.
#
# Usage: images/debian/mkrootfs.sh WORKDIR CACHEDIR OUT.tar
#   WORKDIR   scratch directory (the root is built in WORKDIR/rootfs; removed on exit)
#   CACHEDIR  where debootstrap keeps downloaded .debs between builds (absolute path)
#   OUT.tar   the root filesystem; OUT.tar.timings gets a one-line timing summary
# Environment: GALLEY_DEBIAN_MIRROR (default http://deb.debian.org/debian)
set -euo pipefail

SUITE=bookworm
MIRROR=${GALLEY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# minbase = Essential + apt. On top: the two servers, and netcat/busybox so that another container
# in the task's network namespace can talk to them (nc, wget) in tests and health checks.
# redis-server pulls in redis-tools, so redis-cli is there too.
INCLUDE=nginx-light,redis-server,netcat-openbsd,busybox

work=$1 cache=$2 out=$3
root="$work/rootfs"
[ "$(id -u)" -eq 0 ] || { echo "mkrootfs.sh: must run as root" >&2; exit 1; }
case "$work" in /*) ;; *) echo "mkrootfs.sh: WORKDIR must be absolute" >&2; exit 1 ;; esac

# Unmount anything left under the root (debootstrap mounts /proc and /sys, and bind-mounts /dev
# inside containers) before deleting it: rm -rf through a bind mount of /dev deletes the host's.
unmount_under() {
  local m
  awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  if awk -v p="$1/" 'index($5, p) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    echo "mkrootfs.sh: refusing to delete $1: something is still mounted under it" >&2
    return 1
  fi
}
remove_root() {
  [ -e "$root" ] || return 0
  unmount_under "$root"
  rm -rf --one-file-system "$root"
}
trap remove_root EXIT
trap 'exit 130' INT TERM
remove_root # leftovers of an interrupted build

mkdir -p "$cache" "$root/usr/sbin" "$root/etc/dpkg/dpkg.cfg.d"
# Keep maintainer scripts from starting nginx/redis inside the build chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# No fsync per file while unpacking: the root is thrown away if anything fails. Big speed-up.
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/galley-unsafe-io"
# Don't unpack documentation at all (kept in the image, so later installs stay small too).
cat >"$root/etc/dpkg/dpkg.cfg.d/galley-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF

t0=$(date +%s)
debootstrap --variant=minbase --include="$INCLUDE" --cache-dir="$cache" \
  "$SUITE" "$root" "$MIRROR"
t1=$(date +%s)

unmount_under "$root"
rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/dpkg/dpkg.cfg.d/galley-unsafe-io"

# nginx: the default site on port 80, IPv4 only (Docker networks usually have no IPv6, and
# `listen [::]:80` then stops nginx from starting); logs to the container's stdout/stderr.
site="$root/etc/nginx/sites-available/default"
sed -i '/listen \[::\]:80/d' "$site"
grep -Eq '^[[:space:]]*listen 80 default_server;' "$site" ||
  { echo "mkrootfs.sh: $site does not listen on port 80" >&2; exit 1; }
chroot "$root" nginx -t -q
ln -sf /dev/stdout "$root/var/log/nginx/access.log"
ln -sf /dev/stderr "$root/var/log/nginx/error.log"

# redis: the image's WORKDIR, where a shutdown save lands.
mkdir -p "$root/data"

# busybox applets for commands Debian's minbase lacks (wget, ps, ip, ping, vi, ...), without
# shadowing any real command.
applets=$(chroot "$root" busybox --list)
for applet in $applets; do
  case "$applet" in */* | .*) continue ;; esac
  for d in usr/local/sbin usr/local/bin usr/sbin usr/bin; do
    if [ -e "$root/$d/$applet" ] || [ -L "$root/$d/$applet" ]; then continue 2; fi
  done
  ln -s /usr/bin/busybox "$root/usr/local/bin/$applet"
done

# Clean: package lists and caches, docs, logs, and host files debootstrap copied in (Docker
# provides /etc/resolv.conf, /etc/hosts and /etc/hostname at run time).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
  "$root"/var/lib/dpkg/*-old "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/lintian "$root"/usr/share/locale/* "$root"/tmp/* "$root"/var/tmp/* \
  "$root"/run/* "$root"/debootstrap "$root"/etc/resolv.conf "$root"/etc/hostname
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$root/var/log" -type f -delete
t2=$(date +%s)

mkdir -p "$(dirname "$out")"
tar --numeric-owner --sort=name -C "$root" \
  --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
  -cf "$out.tmp" .
mv "$out.tmp" "$out"
chmod 644 "$out"
t3=$(date +%s)
echo "debootstrap $((t1 - t0))s, clean $((t2 - t1))s, tar $((t3 - t2))s" >"$out.timings"
