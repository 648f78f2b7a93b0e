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
# The kernel matrix: every scenario runs on each (groups kernel-K of tools/debian.lock).
KERNELS=${AAVM_KERNELS:-6.1 6.12}
# The kernel of single boots (bench, demo, single, the accelerator probe).
KERNEL=${AAVM_KERNEL:-${KERNELS%% *}}
mkdir -p "$W"

die() { echo "aavm: ERROR: $*" >&2; exit 1; }

DEBFETCH=$REPO/tools/debfetch.sh
# kernel_dir K: where kernel K (a group kernel-K of tools/debian.lock) is unpacked and its boot image kept.
kernel_dir() { echo "$W/kernels/$1"; }

# lock_stamp GROUP..: changes whenever a pinned line of those groups does (re-extract on a pin bump).
lock_stamp() {
  local g; for g in "$@"; do grep -E "^$g[[:space:]]" "$REPO/tools/debian.lock"; done | sha256sum | cut -c1-16
}

# setup_kernel K: unpack the pinned kernel K; its boot image is `kernel`: an uncompressed vmlinux for an
# xz bzImage (qemu boots the ELF through its PVH note, skipping the decompressor, slow under TCG), the
# bzImage as it is otherwise (6.12 is zstd-compressed; its decompressor is fast enough).
setup_kernel() {
  local k=$1 d stamp
  d=$(kernel_dir "$k") stamp=$(lock_stamp "kernel-$k")
  [ -e "$d/.stamp-$stamp" ] && [ -s "$d/kernel" ] && return 0
  rm -rf "$d" && mkdir -p "$d"
  "$DEBFETCH" extract "kernel-$k" "$d/x"
  local vmlinuz
  vmlinuz=$(ls "$d"/x/boot/vmlinuz-* | head -1)
  python3 - "$vmlinuz" "$d/kernel" <<'PY'
import lzma, shutil, sys
d = open(sys.argv[1], "rb").read()
off = d.find(b"\xfd7zXZ\x00")
if off < 0:
    shutil.copyfile(sys.argv[1], sys.argv[2])
else:
    open(sys.argv[2], "wb").write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[off:]))
PY
  # Only the boot image is used (the initramfs loads no modules): drop the 400 MB of modules.
  rm -rf "$d/x/lib" "$d/x/usr/lib"
  touch "$d/.stamp-$stamp"
}

cmd_setup() {
  "$REPO/tools/prereqs.sh" test-vm
  local k stamp
  for k in $KERNELS; do setup_kernel "$k"; done
  # The guest userland: busybox and the parser the image ships (Debian 13's AppArmor 4.1 with its glibc).
  stamp=$(lock_stamp rootfs-amd64 guest-amd64)
  if [ ! -e "$W/x/.stamp-$stamp" ]; then
    rm -rf "$W/x"
    "$DEBFETCH" extract rootfs-amd64 "$W/x"
    "$DEBFETCH" extract guest-amd64 "$W/x"
    touch "$W/x/.stamp-$stamp"
  fi
  {
    for k in $KERNELS; do echo "kernel-$k=$(ls "$(kernel_dir "$k")"/x/boot/vmlinuz-* | sed 's|.*/vmlinuz-||') $("$DEBFETCH" version "kernel-$k" "linux-image-amd64")"; done
    echo "apparmor=$("$DEBFETCH" version rootfs-amd64 apparmor)"
    echo "libc6=$("$DEBFETCH" version rootfs-amd64 libc6)"
    echo "busybox-static=$("$DEBFETCH" version guest-amd64 busybox-static)"
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
  [ -x "$W/x/usr/sbin/apparmor_parser" ] || die "run '$0 setup' first"
  build_helper
  local X=$W/x R
  R=$(mktemp -d "$W/root.XXXX")
  trap 'rm -rf "$R"' RETURN
  # mktemp made it 0700; as the guest's / that would lock every unprivileged process out of everything
  chmod 755 "$R"
  # The image's root filesystem first (the same assembly step), then the test tools around it.
  local agent_arg=()
  if [ $with_agent = 1 ]; then
    [ -x "$AGENT" ] || die "agent binary $AGENT not found: build it with 'make musl'"
    agent_arg=("$AGENT")
  fi
  "$REPO/tools/image/rootfs.sh" amd64 "$X" "$R" "${agent_arg[@]}"
  mkdir -p "$R"/{bin,usr/bin,proc,sys,dev,run,mnt,root}
  cp "$X/usr/bin/busybox" "$R/bin/"
  local a
  for a in $("$X/usr/bin/busybox" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
  cp "$X/usr/bin/aa-exec" "$X/usr/bin/aa-enabled" "$X/usr/bin/aa-features-abi" "$R/usr/bin/"
  cp "$X/usr/sbin/aa-status" "$R/usr/sbin/"
  echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
  echo 'root:x:0:' > "$R/etc/group"
  echo 'root:$6$notarealhash:19000:0:99999:7:::' > "$R/etc/shadow"; chmod 600 "$R/etc/shadow"
  echo '127.0.0.1 localhost' > "$R/etc/hosts"
  cp "$W/aatime" "$R/usr/local/bin/aatime"
  mkdir -p "$R/aavm/repo-profiles"
  if [ -d "$REPO/profiles" ]; then cp -a "$REPO/profiles/." "$R/aavm/repo-profiles/"; fi
  # Real distribution profiles for scenarios 11 and 21 (`make corpus`; about 300 KiB).
  if [ -d "$REPO/target/corpus/root" ]; then cp -a "$REPO/target/corpus/root" "$R/aavm/corpus"; fi
  cp -a "$HERE/guest/." "$R/aavm/"
  # The kernel feature sets the repo ships, for `check --features` (scenario 31).
  cp -a "$REPO/features" "$R/aavm/features"
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
  if [ ! -s "$W/accel" ] || [ "$W/kernels/$KERNEL/kernel" -nt "$W/accel" ]; then
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

# boot NAME LOG [TIMEOUT] [CPUS] [KERNEL] -> echo rc of the guest script; 125 crash/no marker, 124 timeout.
# no_timer_check: on a loaded host, TCG can miss the kernel's early IO-APIC timer check, which then panics
# ("IO-APIC + timer doesn't work!", seen on 6.1 with the host at load 12).
cmd_boot() {
  local name=$1 log=$2 tmo=${3:-240} cpus=${4:-1} kernel=$W/kernels/${5:-$KERNEL}/kernel
  [ -s "$kernel" ] || die "no kernel ${5:-$KERNEL} (AAVM_KERNELS=$KERNELS): run '$0 setup' first"
  [ -s "$W/initrd.cpio" ] || die "run '$0 build' first"
  local qrc=0 accel
  case $ACCEL in tcg) accel="-accel tcg" ;; kvm) accel="-accel kvm -cpu host" ;; *) accel=$(cat "$W/accel" 2>/dev/null || echo tcg); [ "$accel" = kvm ] && accel="-accel kvm -cpu host" || accel="-accel tcg" ;; esac
  # shellcheck disable=SC2086
  timeout "$tmo" qemu-system-x86_64 $accel -smp "$cpus" -m "$MEM" -nodefaults -display none -no-reboot \
    -serial "file:$log" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$kernel" -initrd "$W/initrd.cpio" \
    -append "console=ttyS0 panic=-1 quiet no_timer_check aavm.run=$name" </dev/null >"$log.qemu" 2>&1 || qrc=$?
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
  local logs=$W/logs k s; rm -rf "$logs"
  for k in $KERNELS; do mkdir -p "$logs/$k"; done
  local t0=$SECONDS
  export -f cmd_boot die; export W ACCEL MEM KERNEL KERNELS
  # Every (kernel, scenario) pair goes into one pool of $JOBS VMs.
  for s in "${scen[@]}"; do for k in $KERNELS; do echo "$k $s"; done; done |
    xargs -P "$JOBS" -L 1 bash -c 'rc=$(cmd_boot "$3" "$1/$2/$3.log" 240 1 "$2"); echo "$rc" > "$1/$2/$3.rc"' _ "$logs"
  local total_pass=0 total_fail=0 pass fail line
  for k in $KERNELS; do
    pass=0 fail=0
    for s in "${scen[@]}"; do
      if line=$(judge "$logs/$k" "$s"); then pass=$((pass + 1)); else fail=$((fail + 1)); fi
      echo "[$k] $line"
    done
    echo "kernel $k ($(sed -n "s/^kernel-$k=//p" "$W/versions.txt" 2>/dev/null)): $pass passed, $fail failed"
    total_pass=$((total_pass + pass)) total_fail=$((total_fail + fail))
  done
  echo "(VM suite wall time $((SECONDS - t0)) s for ${#scen[@]} scenarios x kernels $KERNELS, $JOBS VMs at a time; logs in $logs)"
  echo "$total_pass passed, $total_fail failed"
  [ "$total_fail" = 0 ] && [ "$total_pass" -gt 0 ]
}

# judge DIR SCENARIO: one PASS/FAIL line (and the failed checks under it); status 0 on a pass.
judge() {
  local dir=$1 s=$2 rc checks_fail dur
  rc=$(cat "$dir/$s.rc" 2>/dev/null || echo 125)
  checks_fail=$(grep -c '^AAVM-CHECK FAIL' "$dir/$s.log" 2>/dev/null || true)
  dur=$(sed -n 's/^AAVM-EXIT rc=[0-9]* uptime=\(.*\)/\1/p' "$dir/$s.log" 2>/dev/null | tail -1)
  if [ "$rc" = 0 ] && [ "${checks_fail:-0}" = 0 ] && grep -q '^AAVM-CHECK PASS' "$dir/$s.log"; then
    echo "PASS $s ($(grep -c '^AAVM-CHECK PASS' "$dir/$s.log") checks, guest ${dur:-?}s)"
    return 0
  fi
  case $rc in
    124) echo "FAIL $s (VM timed out; log $dir/$s.log)" ;;
    125) echo "FAIL $s (VM crashed or no AAVM-EXIT marker; log $dir/$s.log; qemu: $(tail -c 300 "$dir/$s.log.qemu" 2>/dev/null))" ;;
    *) echo "FAIL $s (rc=$rc; log $dir/$s.log)" ;;
  esac
  grep '^AAVM-CHECK FAIL' "$dir/$s.log" 2>/dev/null | sed 's/^/    /' || true
  grep -q '^AAVM-CHECK' "$dir/$s.log" 2>/dev/null || tail -n 15 "$dir/$s.log" 2>/dev/null | sed 's/^/    | /'
  return 1
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
  echo "aavm: booting the AppArmor VM (Debian kernel $(sed -n "s/^kernel-$KERNEL=//p" "$W/versions.txt" 2>/dev/null), qemu TCG) ..."
  local t0=$SECONDS rc
  rc=$(cmd_boot demo "$log" 120 1)
  grep -v -e '^AAVM-LOG' -e '^AAVM-SUMMARY' -e '^AAVM-BOOTED' "$log" | sed -e 's/^AAVM-EXIT.*//' -e 's/^AAVM-\(INFO\|CHECK\|DEMO\) //' | grep -v '^$' || true
  echo "aavm: demo done in $((SECONDS - t0)) s (serial log $log)"
  [ "$rc" = 0 ] || { echo "aavm: demo FAILED (guest rc $rc)"; return 1; }
}

# ---- arm64: Debian 13's arm64 kernel under qemu-system-aarch64 (TCG), the aarch64 musl agent, arm64 parser.
ARM64_AGENT=${AAVM_ARM64_AGENT:-$REPO/target/aarch64-unknown-linux-musl/release/apparmor-loader}
ARM64_SCENARIOS=${AAVM_ARM64_SCENARIOS:-30-platform-smoke}

arm64_setup() {
  local a=$W/arm64 stamp
  stamp=$(lock_stamp kernel-arm64 rootfs-arm64 guest-arm64)
  [ -e "$a/.stamp-$stamp" ] && return 0
  rm -rf "$a" && mkdir -p "$a"
  "$DEBFETCH" extract kernel-arm64 "$a/k"
  # Debian's arm64 vmlinuz is a plain (uncompressed) Image: qemu boots it as it is.
  cp "$(ls "$a"/k/boot/vmlinuz-* | head -1)" "$a/kernel"
  rm -rf "$a/k"
  "$DEBFETCH" extract rootfs-arm64 "$a/x"
  "$DEBFETCH" extract guest-arm64 "$a/x"
  touch "$a/.stamp-$stamp"
}

arm64_build() {
  local a=$W/arm64 R
  [ -x "$ARM64_AGENT" ] || die "arm64 agent $ARM64_AGENT not found: build it with 'make musl-arm64'"
  local src=$HERE/helpers/aatime.rs
  if [ ! -x "$a/aatime" ] || [ "$src" -nt "$a/aatime" ]; then
    rustc --edition 2021 -C opt-level=2 -C strip=symbols --target aarch64-unknown-linux-musl -C linker=rust-lld \
      -o "$a/aatime" "$src" || die "building the arm64 aatime helper failed"
  fi
  R=$(mktemp -d "$W/root-arm64.XXXX")
  chmod 755 "$R"
  "$REPO/tools/image/rootfs.sh" arm64 "$a/x" "$R" "$ARM64_AGENT"
  mkdir -p "$R"/{bin,usr/bin,proc,sys,dev,run,mnt,root}
  cp "$a/x/usr/bin/busybox" "$R/bin/"
  # The host cannot run the arm64 busybox to list its applets; the amd64 build of the same version can.
  local b
  for b in $("$W/x/usr/bin/busybox" --list); do [ -e "$R/bin/$b" ] || ln -s busybox "$R/bin/$b"; done
  cp "$a/x/usr/bin/aa-exec" "$R/usr/bin/"
  echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"; echo 'root:x:0:' > "$R/etc/group"
  echo '127.0.0.1 localhost' > "$R/etc/hosts"
  cp "$a/aatime" "$R/usr/local/bin/aatime"
  mkdir -p "$R/aavm"; cp -a "$HERE/guest/." "$R/aavm/"
  install -m 755 "$HERE/guest/init" "$R/init"
  chmod -R a+rX "$R/aavm"
  (cd "$R" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet) > "$a/initrd.cpio"
  rm -rf "$R"
}

# arm64_boot NAME LOG TIMEOUT -> rc of the guest script (no isa-debug-exit on arm: the AAVM-EXIT marker
# alone; poweroff -f ends qemu through PSCI), 125 crash/no marker, 124 timeout
arm64_boot() {
  local name=$1 log=$2 tmo=$3 qrc=0 a=$W/arm64
  timeout "$tmo" qemu-system-aarch64 -M virt -cpu max -accel tcg -smp 1 -m "$MEM" -nodefaults -display none \
    -no-reboot -serial "file:$log" -kernel "$a/kernel" -initrd "$a/initrd.cpio" \
    -append "console=ttyAMA0 panic=-1 quiet aavm.run=$name" </dev/null >"$log.qemu" 2>&1 || qrc=$?
  [ "$qrc" = 124 ] && { echo 124; return 0; }
  local rc
  rc=$(sed -n 's/^AAVM-EXIT rc=\([0-9]*\).*/\1/p' "$log" 2>/dev/null | tail -1)
  echo "${rc:-125}"
}

cmd_arm64() {
  "$REPO/tools/prereqs.sh" test-vm
  [ -s "$W/x/usr/bin/busybox" ] || die "run '$0 setup' first (the amd64 busybox lists the applets)"
  arm64_setup
  arm64_build
  local logs=$W/logs/arm64 s pass=0 fail=0 t0=$SECONDS line
  rm -rf "$logs"; mkdir -p "$logs"
  for s in $ARM64_SCENARIOS; do
    arm64_boot "$s" "$logs/$s.log" 600 > "$logs/$s.rc"
    if line=$(judge "$logs" "$s"); then pass=$((pass + 1)); else fail=$((fail + 1)); fi
    echo "[arm64] $line"
  done
  echo "kernel arm64 ($("$DEBFETCH" version kernel-arm64 linux-image-arm64), $((SECONDS - t0)) s): $pass passed, $fail failed"
  [ "$fail" = 0 ]
}

# features: every kernel's AppArmor feature set, captured in its VM, into features/linux-K-amd64
# (the feature sets `check --features` compiles against; committed, refreshed on a kernel pin bump).
cmd_features() {
  local k log rc out
  mkdir -p "$W/logs" "$REPO/features"
  for k in $KERNELS; do
    log=$W/logs/features-$k.log
    rc=$(cmd_boot features "$log" 120 1 "$k")
    [ "$rc" = 0 ] || die "capturing the features of kernel $k failed (rc $rc; log $log)"
    out=$REPO/features/linux-$k-amd64
    sed -n '/^AAVM-FEATURES-BEGIN/,/^AAVM-FEATURES-END/p' "$log" | sed '1d;$d' | tr -d '\r' > "$out"
    [ -s "$out" ] || die "no feature set in $log"
    echo "aavm: wrote $out ($(sed -n "s/^kernel-$k=//p" "$W/versions.txt"))"
  done
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
  features) cmd_features ;;
  arm64) cmd_arm64 ;;
  scenarios) list_scenarios ;;
  *) die "usage: $0 setup|build [--no-agent]|boot NAME LOG [TIMEOUT] [CPUS]|run [SCENARIO..]|bench|demo|single NAME|features|arm64|scenarios" ;;
esac
