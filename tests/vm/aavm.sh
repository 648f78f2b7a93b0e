#!/bin/bash
# aavm.sh — boot Debian's AppArmor kernel under qemu (TCG) from a busybox initramfs and run guest scripts.
# Recipe: shared aavm-recipe (uncompressed vmlinux via PVH, serial to a file, isa-debug-exit for the rc).
#
#   tests/vm/aavm.sh setup            apt-get qemu/cpio if missing; download+extract kernel, apparmor,
#                                     busybox-static debs into target/aavm (cached); extract vmlinux
#   tests/vm/aavm.sh build [--no-agent]
#                                     initramfs target/aavm/initrd.cpio: busybox, parser+libs, aa-exec,
#                                     the musl apparmor-loader, repo profiles/, tests/vm/guest/*, aatime helper
#   tests/vm/aavm.sh boot NAME LOG [TIMEOUT_S] [CPUS]
#                                     boot once running guest script NAME (scenario name, bench, demo, probe,
#                                     smoke); serial console to LOG; prints and returns the guest script's rc
#                                     (125 = VM crashed / no exit marker, 124 = timeout)
#   tests/vm/aavm.sh run [SCENARIO..] all (or the given) scenarios, 2 VMs in parallel; PASS/FAIL lines and
#                                     a closing `N passed, M failed`; non-zero on any failure
#   tests/vm/aavm.sh bench | demo | probe | smoke
#
# Env: AAVM_DIR (default target/aavm), AAVM_JOBS (parallel VMs, default 2), AAVM_ACCEL (default tcg),
#      AAVM_MEM (default 512M), AAVM_AGENT (path of the static agent binary).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
W=${AAVM_DIR:-$REPO/target/aavm}
AGENT=${AAVM_AGENT:-$REPO/target/x86_64-unknown-linux-musl/release/apparmor-loader}
ACCEL=${AAVM_ACCEL:-tcg}
MEM=${AAVM_MEM:-512M}
JOBS=${AAVM_JOBS:-2}
mkdir -p "$W"

die() { echo "aavm: ERROR: $*" >&2; exit 1; }

cmd_setup() {
  local need=()
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  command -v cpio >/dev/null || need+=(cpio)
  command -v python3 >/dev/null || need+=(python3)
  command -v apt-get >/dev/null || die "apt-get not found: this harness needs a Debian/Ubuntu host"
  if [ ${#need[@]} -gt 0 ]; then
    echo "aavm: installing ${need[*]}"
    [ "$(id -u)" = 0 ] || die "need root to apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
      apt-get update >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
    }
  fi
  # Pin-proof: the security archive replaces the kernel ABI package over time.
  local kpkg
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  if [ -z "$kpkg" ]; then
    apt-get update >/dev/null
    kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
  fi
  [ -n "$kpkg" ] || die "cannot resolve the kernel package from linux-image-amd64 (apt-cache depends)"
  mkdir -p "$W/debs"
  local p missing=()
  for p in "$kpkg" apparmor busybox-static; do
    ls "$W/debs/${p}_"*.deb >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "aavm: downloading ${missing[*]}"
    (cd "$W/debs" && apt-get -o APT::Sandbox::User=root download "${missing[@]}" >/dev/null) || {
      apt-get update >/dev/null
      (cd "$W/debs" && apt-get -o APT::Sandbox::User=root download "${missing[@]}" >/dev/null)
    } || die "apt-get download ${missing[*]} failed"
  fi
  local stamp="$W/x/.extracted-$kpkg"
  if [ ! -e "$stamp" ] || [ ! -s "$W/vmlinux" ]; then
    rm -rf "$W/x" && mkdir -p "$W/x"
    for p in "$kpkg" apparmor busybox-static; do
      dpkg -x "$(ls "$W/debs/${p}_"*.deb | sort -V | tail -1)" "$W/x"
    done
    # Uncompressed ELF vmlinux: qemu boots it via the PVH note, skipping the slow (under TCG) xz decompressor.
    python3 - "$W/x/boot/vmlinuz-${kpkg#linux-image-}" "$W/vmlinux" <<'PY'
import lzma, sys
d = open(sys.argv[1], "rb").read()
off = d.find(b"\xfd7zXZ\x00")
if off < 0:
    sys.exit("no xz payload in " + sys.argv[1])
open(sys.argv[2], "wb").write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[off:]))
PY
    touch "$stamp"
  fi
  {
    echo "kernel_package=$kpkg"
    for p in "$kpkg" apparmor busybox-static; do
      echo "$p=$(dpkg-deb -f "$(ls "$W/debs/${p}_"*.deb | sort -V | tail -1)" Version)"
    done
    echo "qemu=$(qemu-system-x86_64 --version | head -1)"
  } > "$W/versions.txt"
  echo "aavm: setup ok ($(tr '\n' ' ' < "$W/versions.txt"))"
}

build_helper() {
  local src=$HERE/helpers/aatime.rs out=$W/aatime
  if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
    rustc --edition 2021 -C opt-level=2 -C strip=symbols --target x86_64-unknown-linux-musl \
      -o "$out" "$src" || die "building the aatime helper failed (is the musl target installed?)"
  fi
}

cmd_build() {
  local with_agent=1
  [ "${1:-}" = --no-agent ] && with_agent=0
  [ -s "$W/vmlinux" ] && [ -d "$W/x/sbin" ] || die "run '$0 setup' first"
  build_helper
  local X=$W/x R
  R=$(mktemp -d "$W/root.XXXX")
  trap 'rm -rf "$R"' RETURN
  mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/share,proc,sys,dev,tmp,run,etc,mnt,var/lib,root} \
           "$R"/lib/x86_64-linux-gnu "$R"/lib64
  cp "$X/bin/busybox" "$R/bin/"
  local a
  for a in $("$X/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
  cp "$X/sbin/apparmor_parser" "$R/sbin/"
  cp "$X/usr/bin/aa-exec" "$X/usr/bin/aa-enabled" "$R/usr/bin/"
  cp "$X/usr/sbin/aa-status" "$R/usr/sbin/" 2>/dev/null || true
  # glibc for the parser/aa-exec (host is Debian 12 = same glibc as the guest userland needs)
  local f
  for f in $(ldd "$X/sbin/apparmor_parser" "$X/usr/bin/aa-exec" | awk '/=>/ {print $3} /ld-linux/ {print $1}' | sort -u); do
    case $f in /lib64/*) cp -L "$f" "$R/lib64/" ;; *) cp -L "$f" "$R/lib/x86_64-linux-gnu/" ;; esac
  done
  cp -a "$X/etc/apparmor" "$X/etc/apparmor.d" "$R/etc/"
  cp -a "$X/usr/share/apparmor-features" "$R/usr/share/"
  echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
  echo 'root:x:0:' > "$R/etc/group"
  echo 'root:$6$notarealhash:19000:0:99999:7:::' > "$R/etc/shadow"; chmod 600 "$R/etc/shadow"
  echo '127.0.0.1 localhost' > "$R/etc/hosts"
  if [ $with_agent = 1 ]; then
    [ -x "$AGENT" ] || die "agent binary $AGENT not found: build it with 'cargo build --release --target x86_64-unknown-linux-musl'"
    cp "$AGENT" "$R/usr/local/bin/apparmor-loader"
  fi
  cp "$W/aatime" "$R/usr/local/bin/aatime"
  mkdir -p "$R/aavm/repo-profiles"
  if [ -d "$REPO/profiles" ]; then cp -a "$REPO/profiles/." "$R/aavm/repo-profiles/"; fi
  cp -a "$HERE/guest/." "$R/aavm/"
  cp "$W/versions.txt" "$R/aavm/versions.txt" 2>/dev/null || true
  install -m 755 "$HERE/guest/init" "$R/init"
  chmod -R a+rX "$R/aavm"; chmod 755 "$R"/aavm/*.sh "$R"/aavm/scenarios/*.sh 2>/dev/null || true
  (cd "$R" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet) > "$W/initrd.cpio.tmp"
  mv "$W/initrd.cpio.tmp" "$W/initrd.cpio"
  echo "aavm: built $W/initrd.cpio ($(du -k "$W/initrd.cpio" | cut -f1) KiB, agent: $([ $with_agent = 1 ] && echo yes || echo no))"
}

# boot NAME LOG [TIMEOUT] [CPUS] -> echo rc of the guest script; 125 crash/no marker, 124 timeout
cmd_boot() {
  local name=$1 log=$2 tmo=${3:-240} cpus=${4:-1}
  [ -s "$W/initrd.cpio" ] || die "run '$0 build' first"
  local qrc=0
  timeout "$tmo" qemu-system-x86_64 -accel "$ACCEL" -smp "$cpus" -m "$MEM" -nodefaults -display none -no-reboot \
    -serial "file:$log" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$W/vmlinux" -initrd "$W/initrd.cpio" \
    -append "console=ttyS0 panic=-1 quiet aavm.run=$name" </dev/null >"$log.qemu" 2>&1 || qrc=$?
  local rc
  rc=$(sed -n 's/^AAVM-EXIT rc=\([0-9]*\).*/\1/p' "$log" 2>/dev/null | tail -1)
  if [ "$qrc" = 124 ]; then echo 124; return 0; fi
  if [ -z "$rc" ] || [ $(( (qrc - 1) / 2 )) != $(( rc & 127 )) ] || [ $(( qrc & 1 )) != 1 ]; then
    echo 125; return 0
  fi
  echo "$rc"
}

list_scenarios() { (cd "$HERE/guest/scenarios" && ls ./*.sh | sed 's|^\./||; s|\.sh$||' | sort); }

cmd_run() {
  local scen=("$@")
  [ ${#scen[@]} -gt 0 ] || mapfile -t scen < <(list_scenarios)
  local logs=$W/logs; rm -rf "$logs"; mkdir -p "$logs"
  local t0=$SECONDS
  export -f cmd_boot die; export W ACCEL MEM
  printf '%s\n' "${scen[@]}" | xargs -P "$JOBS" -I{} bash -c \
    'rc=$(cmd_boot "$1" "$2/$1.log" 240 1); echo "$rc" > "$2/$1.rc"' _ {} "$logs"
  local pass=0 fail=0 s rc
  for s in "${scen[@]}"; do
    rc=$(cat "$logs/$s.rc" 2>/dev/null || echo 125)
    local checks_fail
    checks_fail=$(grep -c '^AAVM-CHECK FAIL' "$logs/$s.log" 2>/dev/null || true)
    local dur
    dur=$(sed -n 's/^AAVM-EXIT rc=[0-9]* uptime=\(.*\)/\1/p' "$logs/$s.log" | tail -1)
    if [ "$rc" = 0 ] && [ "${checks_fail:-0}" = 0 ] && grep -q '^AAVM-CHECK PASS' "$logs/$s.log"; then
      pass=$((pass + 1)); echo "PASS $s ($(grep -c '^AAVM-CHECK PASS' "$logs/$s.log") checks, guest ${dur:-?}s)"
    else
      fail=$((fail + 1))
      case $rc in
        124) echo "FAIL $s (VM timed out; log $logs/$s.log)" ;;
        125) echo "FAIL $s (VM crashed or no AAVM-EXIT marker; log $logs/$s.log; qemu: $(tail -c 300 "$logs/$s.log.qemu" 2>/dev/null))" ;;
        *) echo "FAIL $s (rc=$rc; log $logs/$s.log)" ;;
      esac
      grep '^AAVM-CHECK FAIL' "$logs/$s.log" 2>/dev/null | sed 's/^/    /' || true
      grep -q '^AAVM-CHECK' "$logs/$s.log" 2>/dev/null || tail -n 15 "$logs/$s.log" 2>/dev/null | sed 's/^/    | /'
    fi
  done
  echo "(VM suite wall time $((SECONDS - t0)) s, logs in $logs)"
  echo "$pass passed, $fail failed"
  [ "$fail" = 0 ] && [ "$pass" -gt 0 ]
}

case "${1:-}" in
  setup) cmd_setup ;;
  build) shift; cmd_build "$@" ;;
  boot) shift; cmd_boot "$@" ;;
  run) shift; cmd_run "$@" ;;
  scenarios) list_scenarios ;;
  *) die "usage: $0 setup|build [--no-agent]|boot NAME LOG [TIMEOUT] [CPUS]|run [SCENARIO..]|scenarios" ;;
esac
