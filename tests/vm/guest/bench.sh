#!/bin/sh
# Benchmarks inside the VM (issue 3). Prints `AAVM-BENCH key value` and `AAVM-BENCH-SAMPLES key v1 v2 ...`
# lines (microseconds unless the key says otherwise); tests/vm/aavm.sh bench turns them into the table and
# target/bench/vm-bench.json.
. /aavm/lib.sh
echo public > /public; echo "top secret" > /secret
SWAPS=${AAVM_SWAPS:-30}
b() { echo "AAVM-BENCH $*"; }
samples() { k=$1; shift; echo "AAVM-BENCH-SAMPLES $k $*"; }
b guest_cpus "$(grep -c ^processor /proc/cpuinfo)"
b binary_bytes "$(stat -c %s /usr/local/bin/apparmor-loader)"
apparmor_parser -V | head -1 | sed 's/^/AAVM-INFO /'
gen() {  # gen DIR PREFIX N: N small profiles (3 rules), one per file
  mkdir -p "$1"
  awk -v d="$1" -v p="$2" -v n="$3" 'BEGIN { for (i = 1; i <= n; i++) { nm = sprintf("%s%04d", p, i); f = d "/" nm
    printf "profile %s {\n  /usr/local/bin/aatime mr,\n  /public r,\n  /tmp/%s/** rw,\n}\n", nm, nm > f; close(f) } }'
}
variant() {  # variant FILE K: the bench profile, version K (0/1 alternate one rule)
  if [ "$2" = 0 ]; then mkprof "$1" bench '/public r' '/tmp/bench/** rw'; else mkprof "$1" bench '/public r' '/tmp/bench/** r'; fi
}
apparmor_parser -Q -K /aavm/repo-profiles/payment-api >/dev/null 2>&1   # warm the page cache

# ---- 1. bare parser baseline: apparmor_parser -r of the bench file, alternating versions -------------------
info "bare parser -r x $SWAPS"
mkdir -p /tmp/bare; variant /tmp/bare/v0 0; variant /tmp/bare/v1 1
s=""; i=0
while [ $i -lt $SWAPS ]; do
  aatime run /tmp/t.us apparmor_parser -r -K /tmp/bare/v$((i % 2)) || fail "bare parser -r failed"
  s="$s $(cat /tmp/t.us)"; i=$((i + 1))
done
samples parser_replace_us $s
apparmor_parser -R /tmp/bare/v0 || fail "removing the baseline profile"

# ---- 2. change -> enforced through the agent: kubelet ..data swaps ----------------------------------------
info "change->enforced x $SWAPS"
mkdir -p /tmp/src0 /tmp/src1
gen /tmp/src0 cm 9; variant /tmp/src0/bench 0
cp /tmp/src0/* /tmp/src1/; variant /tmp/src1/bench 1
CM=/tmp/cm; cm_init $CM /tmp/src0
start_agent --profiles $CM --state-dir /tmp/st-cm
wait_ready 60000 || abort "agent not ready (change->enforced)"
sleep 0.5
s=""; i=1
while [ $i -le $SWAPS ]; do
  cm_stage $CM /tmp/src$((i % 2))
  us=$(aatime swapwait $CM/..data_tmp $CM/..data sha1:bench 15000) || fail "swap $i: not enforced within 15 s"
  cm_finish $CM
  s="$s $us"; i=$((i + 1))
  sleep 0.3
done
samples change_to_enforced_us $s
can bench write /tmp/bench/x && info "last version: bench may write" || info "last version: bench may not write"
b debounce_ms 50
stop_agent

# ---- 3. cold load of N=200: per-file loop vs one batched call vs the agent ---------------------------------
N=200
gen /tmp/cold c $N
info "cold load: per-file loop"
aatime run /tmp/t.us sh -c 'for f in /tmp/cold/*; do apparmor_parser -r -K "$f" || exit 1; done' || fail "per-file loop failed"
b cold_load_per_file_us "$(cat /tmp/t.us)"
[ "$(grep -c '^c[0-9]* (enforce)' $AA/profiles)" = $N ] || fail "per-file loop did not load $N"
apparmor_parser -R /tmp/cold/* >/dev/null || fail "unloading after the loop"
info "cold load: one batched call"
aatime run /tmp/t.us apparmor_parser -r -K /tmp/cold/* || fail "batched call failed"
b cold_load_batched_us "$(cat /tmp/t.us)"
[ "$(grep -c '^c[0-9]* (enforce)' $AA/profiles)" = $N ] || fail "batched call did not load $N"
apparmor_parser -R /tmp/cold/* >/dev/null || fail "unloading after the batch"
info "cold load: agent (process start to /readyz 200)"
t0=$(aatime now)
start_agent --profiles /tmp/cold --state-dir /tmp/st-cold
# wait without load on the single vCPU: poll() on the policy revision until all N are in the kernel, then
# /readyz every 5 ms (hammering /readyz from the start costs the agent ~1.4 ms CPU per request)
aatime waitcount c $N 120000 >/dev/null || fail "agent did not load $N in 120 s"
aatime httpwait $URL/readyz 60000 5 >/dev/null || abort "agent not ready (cold load)"
b cold_load_agent_us "$(aatime since $t0)"
info "agent CPU at ready (thread utime stime, 10 ms ticks): $(for t in /proc/$AGENT_PID/task/*; do echo "$(cat $t/comm) $(sed 's/^.*) //' $t/stat | cut -d' ' -f12,13)"; done | tr '\n' ';')"
b cold_load_n $N
[ "$(grep -c '^c[0-9]* (enforce)' $AA/profiles)" = $N ] || fail "agent did not load $N"
grep 'parser call' $AGENT_LOG | sed 's/.*elapsed_ms=/AAVM-INFO agent parser call elapsed_ms=/' | tail -5

# ---- 4. footprint when idle with 200 profiles -----------------------------------------------------------
sleep 3
b idle_rss_kib "$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' /proc/$AGENT_PID/status)"
b idle_threads "$(ls /proc/$AGENT_PID/task | wc -l)"
# per thread: voluntary+involuntary context switches (a thread that exits in the window is lost; a new one
# counts in full)
ctx() { for t in /proc/$AGENT_PID/task/*; do echo "${t##*/} $(awk '/ctxt_switches/ {s += $2} END {print s}' $t/status)"; done; }
ctx > /tmp/ctx0; t0=$(aatime now); sleep 10; ctx > /tmp/ctx1; dt=$(aatime since $t0)
d=$(awk 'FNR==1{f++} f==1 {b[$1]=$2; next} {d += $2 - b[$1]} END {print d+0}' /tmp/ctx0 /tmp/ctx1)
info "idle context switches per thread: $(paste /tmp/ctx0 /tmp/ctx1 2>/dev/null | tr '\n' ';')"
b idle_wakeups_x1000_per_s "$(( d * 1000000000 / dt ))"
b idle_window_us "$dt"
stop_agent

# ---- 3b. the same cold load without denial monitoring: what listening to the audit stream costs --------
apparmor_parser -R /tmp/cold/* >/dev/null || fail "unloading before the no-audit run"
t0=$(aatime now)
start_agent --profiles /tmp/cold --state-dir /tmp/st-cold-noaudit --audit-source off
aatime waitcount c $N 120000 >/dev/null || fail "agent (audit off) did not load $N in 120 s"
aatime httpwait $URL/readyz 60000 5 >/dev/null || abort "agent not ready (cold load, audit off)"
b cold_load_agent_noaudit_us "$(aatime since $t0)"
stop_agent

# ---- 5. incremental: one file changed among 1000 ---------------------------------------------------------
gen /tmp/inc i 1000
printf '#!/bin/sh\necho "$*" >> /tmp/parser-calls.log\nexec /sbin/apparmor_parser "$@"\n' > /tmp/countparser
chmod 755 /tmp/countparser; : > /tmp/parser-calls.log
info "incremental: agent cold start on 1000"
t0=$(aatime now)
start_agent --profiles /tmp/inc --state-dir /tmp/st-inc --parser /tmp/countparser
aatime waitcount i 1000 240000 >/dev/null || fail "agent did not load 1000 in 240 s"
aatime httpwait $URL/readyz 60000 5 >/dev/null || abort "agent not ready (1000 profiles)"
info "agent ready on 1000 files after $(( $(aatime since $t0) / 1000 )) ms, $(wc -l < /tmp/parser-calls.log) parser calls"
b cold_load_1000_agent_us "$(aatime since $t0)"
sleep 2
n0=$(wc -l < /tmp/parser-calls.log)
sed 's|/tmp/inc/i0500 {|/tmp/inc/i0500 {|; s|  /public r,|  /public r,\n  /secret r,|' /tmp/inc/i0500 > /tmp/i0500.new
us=$(aatime swapwait /tmp/i0500.new /tmp/inc/i0500 sha1:i0500 30000) || fail "incremental change not enforced in 30 s"
b incremental_us "$us"
sleep 3
n1=$(wc -l < /tmp/parser-calls.log)
b incremental_parser_calls "$((n1 - n0))"
tail -n $((n1 - n0)) /tmp/parser-calls.log | cut -c1-200 | sed 's/^/AAVM-INFO incremental parser argv: /'
can i0500 read /secret && info "i0500 new rule enforced" || fail "i0500 new version not enforced"
b rss_1000_kib "$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' /proc/$AGENT_PID/status)"
stop_agent
# ---- 6. a real profile set (issue 17): Debian's apparmor-profiles{,-extra} with broken files -------------
C=/aavm/corpus
if [ -d $C/etc/apparmor.d ]; then
  (cd $C/etc/apparmor.d && find . -type f) | while read -r f; do
    [ -e "/etc/apparmor.d/$f" ] || { mkdir -p "$(dirname "/etc/apparmor.d/$f")"; cp "$C/etc/apparmor.d/$f" "/etc/apparmor.d/$f"; }
  done
  K=/tmp/corpus; mkdir -p $K
  for f in $C/etc/apparmor.d/* $C/usr/share/apparmor/extra-profiles/*; do
    [ -f "$f" ] || continue
    case ${f##*/} in README*) continue ;; esac
    cp "$f" $K/
  done
  printf 'profile broken-syntax {\n  /tmp/x r\n}\n' > $K/broken-syntax
  printf 'profile broken-include {\n  include <local/no-such-file>\n  /tmp/y r,\n}\n' > $K/broken-include
  b corpus_files "$(profile_files $K | wc -l)"
  ABS=abstractions/X
  b corpus_abstraction_k "$(grep -l "$ABS>" $K/* | wc -l)"
  unload_all() { for n in $(sed 's/ ([a-z]*)$//' $AA/profiles | grep -v //); do printf '%s' "$n" > $AA/.remove; done; }
  secs() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000000 }'; }
  unload_all
  info "corpus: one batched apparmor_parser -r"
  aatime run /tmp/t.us apparmor_parser -r -K $K/* >/tmp/corpus-batch.out 2>&1
  b corpus_batched_s "$(secs "$(cat /tmp/t.us)")"
  NTOP=$(grep -vc // $AA/profiles); b corpus_profiles "$NTOP"
  unload_all
  info "corpus: one process per file"
  aatime run /tmp/t.us sh -c "for f in $K/*; do apparmor_parser -r -K \$f >/dev/null 2>&1; done"
  b corpus_per_file_s "$(secs "$(cat /tmp/t.us)")"
  unload_all
  printf '#!/bin/sh\necho "$*" >> /tmp/corpus-calls.log\nexec /sbin/apparmor_parser "$@"\n' > /tmp/corpus-parser
  chmod 755 /tmp/corpus-parser; : > /tmp/corpus-calls.log
  info "corpus: agent cold start, empty cache"
  all_in() { [ "$(grep -vc // $AA/profiles)" -ge "$NTOP" ]; }
  t0=$(aatime now)
  start_agent --profiles $K --state-dir /tmp/st-corpus --parser /tmp/corpus-parser --resync-interval 5s
  wait_until 6000 all_in || fail "corpus: agent did not load $NTOP profiles"
  b corpus_cold_s "$(secs "$(aatime since $t0)")"
  sleep 2; n0=$(wc -l < /tmp/corpus-calls.log); sleep 30; n1=$(wc -l < /tmp/corpus-calls.log)
  b corpus_idle_parser_calls "$((n1 - n0))"
  snap() { for n in $(sed 's/ ([a-z]*)$//' $AA/profiles | grep -v //); do echo "$n $(ksha1 "$n")"; done | md5sum; }
  moved() { [ "$(snap)" != "$S0" ]; }
  f=$K/usr.sbin.dnsmasq; S0=$(snap); n0=$(wc -l < /tmp/corpus-calls.log)
  sed -i 's|^}$|  /etc/aavm-bench-edit r,\n}|' "$f"
  wait_until 1200 moved || fail "corpus: the edit of $f was not applied"
  sleep 3; b corpus_edit_parser_calls "$(( $(wc -l < /tmp/corpus-calls.log) - n0 ))"
  S0=$(snap); n0=$(wc -l < /tmp/corpus-calls.log)
  printf '  /etc/aavm-bench-abstraction r,\n' >> /etc/apparmor.d/$ABS
  wait_until 3000 moved || fail "corpus: the edit of $ABS reached no profile"
  sleep 5; b corpus_abstraction_edit_parser_calls "$(( $(wc -l < /tmp/corpus-calls.log) - n0 ))"
  stop_agent
  info "corpus: reboot (kernel emptied, state dir kept)"
  unload_all; n0=$(wc -l < /tmp/corpus-calls.log)
  t0=$(aatime now)
  start_agent --profiles $K --state-dir /tmp/st-corpus --parser /tmp/corpus-parser
  wait_until 6000 all_in || fail "corpus: agent did not reload $NTOP profiles after the reboot"
  b corpus_reboot_s "$(secs "$(aatime since $t0)")"
  info "corpus: reboot ran $(( $(wc -l < /tmp/corpus-calls.log) - n0 )) parser processes: $(tail -n +$((n0 + 1)) /tmp/corpus-calls.log | cut -c1-40 | tr '\n' ';')"
  stop_agent
else
  fail "no corpus in the initramfs: run 'make corpus' before 'tests/vm/aavm.sh build'"
fi
pass "benchmark ran"
finish
