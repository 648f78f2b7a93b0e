#!/bin/bash
# aavm.sh — boot Debian's AppArmor kernel under qemu (TCG) from a busybox initramfs and run guest scripts.
# Recipe: shared aavm-recipe (uncompressed vmlinux via PVH, serial to a file, isa-debug-exit for the rc).
#
#   tests/vm/aavm.sh setup            tools/prereqs.sh test-vm (qemu, cpio, ...); download+extract kernel, apparmor,
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
#   tests/vm/aavm.sh bench            benchmarks in one VM: table on stdout, target/bench/vm-bench.json
#   tests/vm/aavm.sh demo             agent on the repo's profiles/, /profiles, one enforced denial
#   tests/vm/aavm.sh single NAME      boot one guest script (smoke, probe, probe2, a scenario) and cat its log
#
# Env: AAVM_DIR (default target/aavm), AAVM_JOBS (parallel VMs, default 2), AAVM_ACCEL (auto|tcg|kvm; auto =
#      KVM with -cpu host if a smoke boot passes with it within 20 s, else TCG; decided once per build),
#      AAVM_MEM (default 512M), AAVM_AGENT (path of the static agent binary).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
W=${AAVM_DIR:-$REPO/target/aavm}
AGENT=${AAVM_AGENT:-$REPO/target/x86_64-unknown-linux-musl/release/apparmor-loader}
ACCEL=${AAVM_ACCEL:-auto}
MEM=${AAVM_MEM:-512M}
JOBS=${AAVM_JOBS:-2}
mkdir -p "$W"

die() { echo "aavm: ERROR: $*" >&2; exit 1; }

kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }

# download_debs PKG..: the ones not yet in $W/debs, with apt-get download.
download_debs() {
  local p missing=()
  for p in "$@"; do ls "$W/debs/${p}_"*.deb >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "aavm: downloading ${missing[*]}"
  (cd "$W/debs" && apt-get -o APT::Sandbox::User=root download "${missing[@]}" >/dev/null)
}

cmd_setup() {
  "$REPO/tools/prereqs.sh" test-vm
  command -v apt-get >/dev/null || die "apt-get not found: this harness needs a Debian/Ubuntu host"
  mkdir -p "$W/debs"
  local kpkg p
  kpkg=$(kernel_package)
  if [ -z "$kpkg" ] || ! download_debs "$kpkg" apparmor busybox-static; then
    # No package lists yet, or stale ones: the security archive replaces the kernel ABI package behind
    # linux-image-amd64 and drops the old one. Refresh, resolve again, download again.
    apt-get update >/dev/null
    kpkg=$(kernel_package)
    [ -n "$kpkg" ] || die "cannot resolve the kernel package from linux-image-amd64 (apt-cache depends)"
    download_debs "$kpkg" apparmor busybox-static || die "apt-get download $kpkg apparmor busybox-static failed"
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
  # mktemp made it 0700; as the guest's / that would lock every unprivileged process out of everything
  chmod 755 "$R"
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
  # Real distribution profiles for scenarios 11 and 21 (`make corpus`; about 300 KiB).
  if [ -d "$REPO/target/corpus/root" ]; then cp -a "$REPO/target/corpus/root" "$R/aavm/corpus"; fi
  cp -a "$HERE/guest/." "$R/aavm/"
  cp "$W/versions.txt" "$R/aavm/versions.txt" 2>/dev/null || true
  install -m 755 "$HERE/guest/init" "$R/init"
  chmod -R a+rX "$R/aavm"; chmod 755 "$R"/aavm/*.sh "$R"/aavm/scenarios/*.sh 2>/dev/null || true
  (cd "$R" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet) > "$W/initrd.cpio.tmp"
  mv "$W/initrd.cpio.tmp" "$W/initrd.cpio"
  [ "$ACCEL" = auto ] && resolve_accel >/dev/null
  echo "aavm: built $W/initrd.cpio ($(du -k "$W/initrd.cpio" | cut -f1) KiB, agent: $([ $with_agent = 1 ] && echo yes || echo no))"
}

# auto: try KVM once (the recipe's pitfall 1: on this kind of host /dev/kvm opens but `-cpu host` aborts at
# once and other CPU models hang, so never use `-accel kvm:tcg`); the answer is cached next to the initramfs.
resolve_accel() {
  case $ACCEL in tcg) echo "-accel tcg"; return ;; kvm) echo "-accel kvm -cpu host"; return ;; esac
  if [ ! -s "$W/accel" ] || [ "$W/vmlinux" -nt "$W/accel" ]; then
    local a=tcg rc
    if [ -w /dev/kvm ]; then
      rc=$(ACCEL=kvm cmd_boot smoke "$W/accel-probe.log" 20 1)
      [ "$rc" = 0 ] && a=kvm
    fi
    echo "$a" > "$W/accel"
    echo "aavm: accelerator: $a$([ "$a" = tcg ] && [ -e /dev/kvm ] && echo " (KVM smoke boot failed: $(tail -c 200 "$W/accel-probe.log.qemu" 2>/dev/null | tr '\n' ' '))")" >&2
  fi
  case $(cat "$W/accel") in kvm) echo "-accel kvm -cpu host" ;; *) echo "-accel tcg" ;; esac
}

# boot NAME LOG [TIMEOUT] [CPUS] -> echo rc of the guest script; 125 crash/no marker, 124 timeout
cmd_boot() {
  local name=$1 log=$2 tmo=${3:-240} cpus=${4:-1}
  [ -s "$W/initrd.cpio" ] || die "run '$0 build' first"
  local qrc=0 accel
  case $ACCEL in tcg) accel="-accel tcg" ;; kvm) accel="-accel kvm -cpu host" ;; *) accel=$(cat "$W/accel" 2>/dev/null || echo tcg); [ "$accel" = kvm ] && accel="-accel kvm -cpu host" || accel="-accel tcg" ;; esac
  # shellcheck disable=SC2086
  timeout "$tmo" qemu-system-x86_64 $accel -smp "$cpus" -m "$MEM" -nodefaults -display none -no-reboot \
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


cmd_bench() {
  local log=$W/logs/bench.log out=$REPO/target/bench/vm-bench.json
  mkdir -p "$W/logs" "$(dirname "$out")"
  echo "aavm: running the benchmarks in the VM (TCG, 1 vCPU; ~2-3 min, plus ~15 min for the distribution corpus) ..."
  local rc t0=$SECONDS
  rc=$(cmd_boot bench "$log" 2400 1)
  echo "aavm: VM finished in $((SECONDS - t0)) s (guest rc $rc, log $log)"
  grep '^AAVM-CHECK FAIL' "$log" || true
  local prc=0
  python3 - "$log" "$out" "$AGENT" "$W/versions.txt" <<'PY2' || prc=$?
import json, os, platform, statistics, sys, time
log, out, agent, versions = sys.argv[1:5]
vals, samples = {}, {}
for line in open(log, errors="replace"):
    p = line.split()
    if line.startswith("AAVM-BENCH-SAMPLES "):
        samples[p[1]] = [int(x) for x in p[2:]]
    elif line.startswith("AAVM-BENCH "):
        vals[p[1]] = p[2] if len(p) > 2 else ""
need = ["parser_replace_us", "change_to_enforced_us"]
missing = [k for k in need if k not in samples] + [k for k in ("cold_load_agent_us", "cold_load_per_file_us", "cold_load_batched_us", "incremental_us", "incremental_parser_calls", "idle_rss_kib", "idle_wakeups_x1000_per_s") if k not in vals]
if missing:
    sys.exit("aavm bench: the VM run did not produce: " + ", ".join(missing) + f" (see {log})")
def pct(xs, q):  # nearest-rank percentile
    xs = sorted(xs); k = max(1, -(-len(xs) * q // 100)); return xs[int(k) - 1]
ms = lambda us: round(us / 1000.0, 1)
c2e, bare = samples["change_to_enforced_us"], samples["parser_replace_us"]
r = {
    "change_to_enforced_ms_median": ms(statistics.median(c2e)),
    "change_to_enforced_ms_p95": ms(pct(c2e, 95)),
    "parser_replace_ms_median": ms(statistics.median(bare)),
    "agent_overhead_ms_median": ms(statistics.median(c2e) - statistics.median(bare)),
    "cold_load_n": int(vals.get("cold_load_n", 200)),
    "cold_load_agent_s": round(int(vals["cold_load_agent_us"]) / 1e6, 3),
    "cold_load_per_file_s": round(int(vals["cold_load_per_file_us"]) / 1e6, 3),
    "cold_load_batched_s": round(int(vals["cold_load_batched_us"]) / 1e6, 3),
    "incremental_parser_calls": int(vals["incremental_parser_calls"]),
    "incremental_ms": ms(int(vals["incremental_us"])),
    "idle_rss_kib": int(vals["idle_rss_kib"]),
    "idle_wakeups_per_s": round(int(vals["idle_wakeups_x1000_per_s"]) / 1000.0, 2),
    "binary_bytes": os.path.getsize(agent),
}
# The distribution corpus (issue 17): seconds and parser-process counts as the guest printed them.
for k in ("corpus_files", "corpus_profiles", "corpus_abstraction_k", "corpus_idle_parser_calls", "corpus_edit_parser_calls", "corpus_abstraction_edit_parser_calls"):
    if k in vals: r[k] = int(vals[k])
for k in ("corpus_cold_s", "corpus_batched_s", "corpus_per_file_s", "corpus_reboot_s"):
    if k in vals: r[k] = float(vals[k])
json.dump(r, open(out, "w"), indent=2); open(out, "a").write("\n")
ratio_b = r["cold_load_agent_s"] / r["cold_load_batched_s"]
speedup_a = r["cold_load_per_file_s"] / r["cold_load_agent_s"]
ok = lambda c: "ok" if c else "MISSED"
rows = [
    ("change -> enforced, median (n=%d swaps)" % len(c2e), "%.1f ms" % r["change_to_enforced_ms_median"], ""),
    ("change -> enforced, p95", "%.1f ms" % r["change_to_enforced_ms_p95"], ""),
    ("bare apparmor_parser -r, median (n=%d)" % len(bare), "%.1f ms" % r["parser_replace_ms_median"], ""),
    ("agent overhead above bare parser (median)", "%.1f ms" % r["agent_overhead_ms_median"], "<= 50 ms: " + ok(r["agent_overhead_ms_median"] <= 50)),
    ("cold load N=%d: agent to ready" % r["cold_load_n"], "%.3f s" % r["cold_load_agent_s"], "<= 1.2 x batched: %s (%.2f x)" % (ok(ratio_b <= 1.2), ratio_b)),
    ("cold load: one parser -r per file (loop)", "%.3f s" % r["cold_load_per_file_s"], "agent >= 3 x faster: %s (%.1f x)" % (ok(speedup_a >= 3), speedup_a)),
    ("cold load: one batched parser -r call", "%.3f s" % r["cold_load_batched_s"], "(the floor)"),
    ("incremental: 1 of 1000 changed, parser calls", str(r["incremental_parser_calls"]), "== 1: " + ok(r["incremental_parser_calls"] == 1)),
    ("incremental: rename -> enforced", "%.1f ms" % r["incremental_ms"], ""),
    ("idle RSS with 200 profiles", "%d KiB" % r["idle_rss_kib"], "<= 8 MB (8192 KiB): " + ok(r["idle_rss_kib"] <= 8192)),
    ("idle wakeups (ctx switches, all threads, 10 s)", "%.2f /s" % r["idle_wakeups_per_s"], "~0: " + ok(r["idle_wakeups_per_s"] < 1)),
    ("static musl binary size", "%d bytes" % r["binary_bytes"], ""),
]
if "corpus_cold_s" in r and "corpus_batched_s" in r:
    cr = r["corpus_cold_s"] / r["corpus_batched_s"]
    rows += [
        ("corpus (%s files, %s profiles): agent cold" % (r.get("corpus_files"), r.get("corpus_profiles")), "%.3f s" % r["corpus_cold_s"], "<= 1.1 x batched: %s (%.2f x)" % (ok(cr <= 1.1), cr)),
        ("corpus: one batched parser -r", "%.3f s" % r["corpus_batched_s"], "(the floor)"),
        ("corpus: one parser -r per file", "%.3f s" % r.get("corpus_per_file_s", 0), ""),
    ]
    if "corpus_reboot_s" in r:
        rows.append(("corpus: agent after a reboot, cache warm", "%.3f s" % r["corpus_reboot_s"], ">= 10 x faster than cold: %s (%.1f x)" % (ok(r["corpus_cold_s"] >= 10 * r["corpus_reboot_s"]), r["corpus_cold_s"] / max(r["corpus_reboot_s"], 0.001))))
    for k, want in (("corpus_idle_parser_calls", 0), ("corpus_edit_parser_calls", 1), ("corpus_abstraction_edit_parser_calls", 1)):
        if k in r:
            rows.append((k.replace("_", " ") + ("" if "abstraction" not in k else " (k=%s)" % r.get("corpus_abstraction_k")), str(r[k]), "== %d: %s" % (want, ok(r[k] == want))))
w = max(len(a) for a, _, _ in rows)
print("apparmor-loader VM benchmark (%s, %s; qemu TCG, 1 vCPU; %s)" % (time.strftime("%Y-%m-%d"), platform.node() or "host",
      open(versions).read().replace("\n", " ").strip() if os.path.exists(versions) else ""))
print("| %-*s | %-12s | %s |" % (w, "figure", "value", "target"))
print("|-%s-|-%s-|-%s-|" % ("-" * w, "-" * 12, "-" * 40))
for a, b, c in rows:
    print("| %-*s | %-12s | %s |" % (w, a, b, c))
extra = {k: v for k, v in vals.items() if k in ("cold_load_1000_agent_us", "cold_load_agent_noaudit_us", "rss_1000_kib", "idle_threads", "guest_cpus")}
print("also:", ", ".join("%s=%s" % kv for kv in sorted(extra.items())))
print("wrote", out)
PY2
  [ "$rc" = 0 ] && [ $prc = 0 ] || { echo "aavm: bench FAILED (guest rc $rc)"; return 1; }
}

cmd_demo() {
  local log=$W/logs/demo.log
  mkdir -p "$W/logs"
  echo "aavm: booting the AppArmor VM (Debian kernel $(sed -n 's/^kernel_package=linux-image-//p' "$W/versions.txt" 2>/dev/null), qemu TCG) ..."
  local t0=$SECONDS rc
  rc=$(cmd_boot demo "$log" 120 1)
  grep -v -e '^AAVM-LOG' -e '^AAVM-SUMMARY' -e '^AAVM-BOOTED' "$log" | sed -e 's/^AAVM-EXIT.*//' -e 's/^AAVM-\(INFO\|CHECK\|DEMO\) //' | grep -v '^$' || true
  echo "aavm: demo done in $((SECONDS - t0)) s (serial log $log)"
  [ "$rc" = 0 ] || { echo "aavm: demo FAILED (guest rc $rc)"; return 1; }
}

cmd_single() {  # boot one guest script and show its serial output (smoke, probe, probe2, a scenario)
  local name=$1 log=$W/logs/$1.log; mkdir -p "$W/logs"
  local rc; rc=$(cmd_boot "$name" "$log" "${2:-240}" 1)
  cat "$log"; echo "aavm: $name rc=$rc"; [ "$rc" = 0 ]
}

stale_warning() {
  [ -x "$AGENT" ] || return 0
  if [ -n "$(find "$REPO/src" "$REPO/Cargo.toml" -newer "$AGENT" -print -quit 2>/dev/null)" ]; then
    echo "aavm: WARNING: $AGENT is older than src/ (run: cargo build --release --target x86_64-unknown-linux-musl)" >&2
  fi
}

case "${1:-}" in
  setup) cmd_setup ;;
  build) shift; cmd_build "$@" ;;
  boot) shift; cmd_boot "$@" ;;
  run) shift; stale_warning; cmd_run "$@" ;;
  bench) stale_warning; cmd_bench ;;
  demo) cmd_demo ;;
  single) shift; cmd_single "$@" ;;
  scenarios) list_scenarios ;;
  *) die "usage: $0 setup|build [--no-agent]|boot NAME LOG [TIMEOUT] [CPUS]|run [SCENARIO..]|bench|demo|single NAME|scenarios" ;;
esac
