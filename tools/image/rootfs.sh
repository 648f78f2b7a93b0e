#!/bin/bash
# rootfs.sh — the image's root filesystem, for one platform; the one assembly step that the Dockerfile,
# `make image` (tools/image/build.sh) and the VM suite's initramfs all run.
#
#   tools/image/rootfs.sh ARCH DEBS_DIR OUT_DIR [AGENT]
#
# ARCH: amd64 | arm64. DEBS_DIR: the packages of tools/debian.lock group rootfs-ARCH extracted there
# (`tools/debfetch.sh extract rootfs-ARCH DEBS_DIR`): Debian 13's apparmor (AppArmor 4.1) and its glibc.
# OUT_DIR gets only what the agent runs: apparmor-loader (AGENT, a static binary; left out when not
# given), apparmor_parser and the libraries it loads (libc, libm, the dynamic loader: its only NEEDED
# entries are libc and ld.so, checked here), parser.conf, the abi/, abstractions/ and tunables/ that
# profiles include, the feature file parser.conf points at, and the agent's empty directories. No shell.
set -euo pipefail

die() { echo "rootfs: $*" >&2; exit 1; }
[ $# -ge 3 ] && [ $# -le 4 ] || die "usage: $0 amd64|arm64 DEBS_DIR OUT_DIR [AGENT]"
ARCH=$1 X=$2 OUT=$3 AGENT=${4:-}
case $ARCH in
  amd64) TRIPLET=x86_64-linux-gnu LDSO=ld-linux-x86-64.so.2 LDSO_AT=lib64 ;;
  arm64) TRIPLET=aarch64-linux-gnu LDSO=ld-linux-aarch64.so.1 LDSO_AT=lib ;;
  *) die "unknown ARCH '$ARCH' (amd64 or arm64)" ;;
esac
PARSER=$X/usr/sbin/apparmor_parser
[ -x "$PARSER" ] || die "$PARSER missing: extract the rootfs-$ARCH packages into $X first"
LIBS=$X/usr/lib/$TRIPLET
[ -f "$LIBS/libc.so.6" ] && [ -f "$LIBS/$LDSO" ] || die "glibc for $ARCH missing under $LIBS"

# Debian 13 is merged-/usr: /sbin, /lib and /lib64 are links into /usr, as on the base image.
install -d -m 0755 "$OUT"/usr/local/bin "$OUT"/usr/sbin "$OUT"/usr/lib/"$TRIPLET" "$OUT"/etc/apparmor \
  "$OUT"/etc/apparmor.d "$OUT"/usr/share/apparmor-features "$OUT"/var/lib/apparmor-loader \
  "$OUT"/etc/apparmor-loader/profiles "$OUT"/etc/apparmor-loader/config
install -d -m 1777 "$OUT"/tmp
ln -sfn usr/sbin "$OUT"/sbin
ln -sfn usr/lib "$OUT"/lib
install -m 0755 "$PARSER" "$OUT"/usr/sbin/apparmor_parser
for lib in libc.so.6 libm.so.6 "$LDSO"; do install -m 0755 "$LIBS/$lib" "$OUT/usr/lib/$TRIPLET/$lib"; done
if [ "$LDSO_AT" = lib64 ]; then
  install -d -m 0755 "$OUT"/usr/lib64
  ln -sfn usr/lib64 "$OUT"/lib64
  ln -sfn ../lib/"$TRIPLET"/"$LDSO" "$OUT"/usr/lib64/"$LDSO"
else
  ln -sfn "$TRIPLET"/"$LDSO" "$OUT"/usr/lib/"$LDSO"
fi
# What the parser needs must be what was copied: a new parser build that links more fails here.
needed=$(LC_ALL=C readelf -d "$PARSER" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
for lib in $needed; do [ -e "$OUT/usr/lib/$TRIPLET/$lib" ] || die "apparmor_parser needs $lib, which this script does not copy"; done
cp "$X"/etc/apparmor/parser.conf "$OUT"/etc/apparmor/
cp -a "$X"/etc/apparmor.d/abi "$X"/etc/apparmor.d/abstractions "$X"/etc/apparmor.d/tunables "$OUT"/etc/apparmor.d/
cp -a "$X"/usr/share/apparmor-features/features "$OUT"/usr/share/apparmor-features/
if [ -n "$AGENT" ]; then
  [ -x "$AGENT" ] || die "agent binary $AGENT missing"
  install -m 0755 "$AGENT" "$OUT"/usr/local/bin/apparmor-loader
fi
