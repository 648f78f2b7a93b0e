#!/bin/sh
# Scenario 10 (issue 5): denials seen, counted and turned into rules, on the real kernel.
#  A  enforce, --audit-source kmsg: a confined process is denied a file read, the exec of a .sh, a raw socket
#     and a capability -> each fails in the process (EACCES/EPERM), the kernel logs it, GET /denials and
#     apparmor_loader_audit_denials_total show it with the right operation and mask.
#  B  the same profile in complain mode via --config (modes:), source auto (netlink here) -> the operations
#     succeed and show up as ALLOWED (and in apparmor_loader_audit_complain_allowed_total).
#  C  enforce again (netlink): denied again; `suggest --from` a saved /dev/kmsg dump; its rules, added to the
#     profile and published by a kubelet-style ..data swap, make the operations succeed; the counter stops.
#  D  a denial storm (thousands/s for ~5 s, netlink, then kmsg): /healthz stays fast, VmRSS bounded, the
#     /denials ring bounded.
. /aavm/lib.sh
P=dentest
mkdir -p /tmp/den /tmp/v1
echo secret > /tmp/den/secret; echo storm > /tmp/den/storm; : > /tmp/den/owned
printf '#!/bin/sh\necho script-ran\n' > /tmp/den/run.sh; chmod 755 /tmp/den/run.sh
# `/tmp/den/owned rw`: chown(2) needs file `w` under AppArmor before the kernel asks for CAP_CHOWN, so the
# capability is the only thing denied. No `deny` rules: everything is denied implicitly (and so logged).
mkprof /tmp/v1/$P $P '/tmp/den/owned rw'
CM=/tmp/cm; cm_init $CM /tmp/v1

# the four operations, each in a fresh process confined by $P (aatime probe prints OK or `ERR errno ...`)
op() {  # op read|exec|raw|chown -> output of the probe (one line)
  case $1 in
    read) confined $P aatime probe read /tmp/den/secret ;;
    exec) confined $P aatime probe exec /tmp/den/run.sh ;;
    raw) confined $P aatime probe raw - ;;
    chown) confined $P aatime probe chown /tmp/den/owned ;;
  esac 2>&1 | tr '\n' ' ' | sed 's/ *$//'
}
metric() { awk -v k="$2" '$1 == k {print $2; f=1} END {if (!f) print 0}' "$1"; }   # metric FILE SERIES
den() { echo "apparmor_loader_audit_denials_total{profile=\"$P\",operation=\"$1\"}"; }
alw() { echo "apparmor_loader_audit_complain_allowed_total{profile=\"$P\",operation=\"$1\"}"; }
den_sum() { awk -v p="profile=\"$P\"" '/^apparmor_loader_audit_denials_total\{/ && index($1, p) {s += $2} END {print s + 0}' "$1"; }
fetch_denials() { get "/denials?profile=$P$1" > /tmp/denials.json; }
dj() { aatime json /tmp/denials.json "$1" 2>/dev/null; }
ndenials_ge() { fetch_denials; [ "$(dj 'records#')" -ge "$1" ]; }   # at least N records for $P
klog_has() { dmesg | grep "apparmor=\"$1\"" | grep "profile=\"$P\"" | grep -q "$2"; }
mode_is() { [ "$(kmode $P)" = "$1" ]; }
count_above() { metrics_snap /tmp/m.now; [ "$(metric /tmp/m.now "$1")" -gt "$2" ]; }   # count_above SERIES N
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/$AGENT_PID/status; }

# checks on one round of denials: in the process, in the kernel log, in /denials, in the metrics
check_denied_round() {  # check_denied_round LABEL SOURCE
  r=$(op read); check_eq "$1: read of /tmp/den/secret fails with EACCES" "${r%% Permission*}" "ERR 13"
  r=$(op exec); check_eq "$1: exec of /tmp/den/run.sh fails with EACCES" "${r%% Permission*}" "ERR 13"
  r=$(op raw); check_eq "$1: socket(AF_INET, SOCK_RAW, ICMP) fails with EACCES" "${r%% Permission*}" "ERR 13"
  r=$(op chown); check_eq "$1: chown to uid 1 (CAP_CHOWN) fails with EPERM" "${r%% Operation*}" "ERR 1"
  check "$1: kernel logged DENIED open /tmp/den/secret" klog_has DENIED 'operation="open".*name="/tmp/den/secret".*denied_mask="r"'
  check "$1: kernel logged DENIED exec /tmp/den/run.sh" klog_has DENIED 'operation="exec".*name="/tmp/den/run.sh".*denied_mask="x"'
  check "$1: kernel logged DENIED create inet raw" klog_has DENIED 'operation="create".*family="inet" sock_type="raw".*denied_mask="create"'
  check "$1: kernel logged DENIED capable chown" klog_has DENIED 'operation="capable".*capname="chown"'
  wait_until 50 ndenials_ge 4 || fail "$1: /denials has $(dj 'records#') records for $P within 5 s, want 4"
  info "$1: /denials: $(head -c 1500 /tmp/denials.json)"
  check_eq "$1: /denials source" "$(dj source.source)" "$2"
  check_eq "$1: /denials record count for $P" "$(dj 'records#')" 4
  check_eq "$1: /denials open: decision" "$(dj 'records[name=/tmp/den/secret].decision')" DENIED
  check_eq "$1: /denials open: operation" "$(dj 'records[name=/tmp/den/secret].operation')" open
  check_eq "$1: /denials open: denied_mask" "$(dj 'records[name=/tmp/den/secret].denied_mask')" r
  check_eq "$1: /denials exec: operation" "$(dj 'records[name=/tmp/den/run.sh].operation')" exec
  check_eq "$1: /denials exec: denied_mask" "$(dj 'records[name=/tmp/den/run.sh].denied_mask')" x
  check_eq "$1: /denials raw socket: family/sock_type/denied_mask" \
    "$(dj 'records[operation=create].family')/$(dj 'records[operation=create].sock_type')/$(dj 'records[operation=create].denied_mask')" inet/raw/create
  check_eq "$1: /denials capability: capname" "$(dj 'records[operation=capable].capname')" chown
  check_eq "$1: /denials capability: decision" "$(dj 'records[operation=capable].decision')" DENIED
  metrics_snap /tmp/m.$1
  for o in open exec create capable; do check_eq "$1: metric $(den $o)" "$(metric /tmp/m.$1 "$(den $o)")" 1; done
}

# ---------------------------------------------------------------- A: enforce, kmsg
start_agent --profiles $CM --audit-source kmsg
wait_ready 60000 && pass "A: agent ready (kmsg)" || abort "A: agent not ready"
check_eq "A: $P enforced by the kernel" "$(kmode $P)" enforce
check_denied_round A kmsg

# ---------------------------------------------------------------- B: complain via the config file, auto source
stop_agent
printf 'modes:\n  %s: complain\n' $P > /tmp/complain.yaml
start_agent --profiles $CM --config /tmp/complain.yaml
wait_ready 60000 && pass "B: agent ready (--config with modes: {$P: complain})" || abort "B: agent not ready"
wait_until 100 mode_is complain
check_eq "B: kernel mode of $P" "$(kmode $P)" complain
check_eq "B: read of /tmp/den/secret succeeds" "$(op read)" OK
check_eq "B: exec of /tmp/den/run.sh runs the script" "$(op exec)" script-ran
check_eq "B: raw socket succeeds" "$(op raw)" OK
check_eq "B: chown succeeds" "$(op chown)" OK
check "B: kernel logged ALLOWED open /tmp/den/secret" klog_has ALLOWED 'operation="open".*name="/tmp/den/secret"'
check "B: kernel logged ALLOWED exec /tmp/den/run.sh" klog_has ALLOWED 'operation="exec".*name="/tmp/den/run.sh"'
check "B: kernel logged ALLOWED create inet raw" klog_has ALLOWED 'operation="create".*sock_type="raw"'
check "B: kernel logged ALLOWED capable chown" klog_has ALLOWED 'operation="capable".*capname="chown"'
# 7 records: open, exec, the script's interpreter in the learning profile dentest//null-/tmp/den/run.sh
# (file_mmap /bin/busybox, open of the script), create inet raw, capable net_raw, capable chown (the last one)
has_chown() { fetch_denials; dj 'records[capname=chown]' >/dev/null; }
wait_until 50 has_chown || fail "B: no capable chown record in /denials within 5 s ($(dj 'records#') records)"
info "B: /denials: $(head -c 2500 /tmp/denials.json)"
src=$(dj source.source); info "B: auto chose: $src ($(dj source.description))"
check_eq "B: auto picks netlink in the VM" "$src" netlink
check_eq "B: /denials open: decision" "$(dj 'records[name=/tmp/den/secret].decision')" ALLOWED
check_eq "B: /denials exec: decision/operation" "$(dj 'records[name=/tmp/den/run.sh].decision')/$(dj 'records[name=/tmp/den/run.sh].operation')" ALLOWED/exec
check_eq "B: /denials raw socket: decision/sock_type" "$(dj 'records[operation=create].decision')/$(dj 'records[operation=create].sock_type')" ALLOWED/raw
check_eq "B: /denials capable chown: decision" "$(dj 'records[capname=chown].decision')" ALLOWED
check_eq "B: /denials has no DENIED record for $P" "$(dj 'records[decision=DENIED]#')" 0
metrics_snap /tmp/m.B
for o in open exec create capable; do
  v=$(metric /tmp/m.B "$(alw $o)"); [ "$v" -ge 1 ] && pass "B: metric $(alw $o) = $v" || fail "B: metric $(alw $o) = $v, want >= 1"
done
check_eq "B: no denials counted for $P" "$(den_sum /tmp/m.B)" 0

# ---------------------------------------------------------------- C: enforce again, suggest, publish, re-run
stop_agent
start_agent --profiles $CM
wait_ready 60000 && pass "C: agent ready (no config: enforce, source auto)" || abort "C: agent not ready"
wait_until 100 mode_is enforce
check_eq "C: kernel mode of $P back to" "$(kmode $P)" enforce
check_denied_round C netlink

# a raw /dev/kmsg dump keeps the facility, so suggest can trust its kernel records (plain dmesg cannot)
timeout 1 cat /dev/kmsg > /tmp/klog.txt
info "C: saved kernel log: $(grep -c 'apparmor=' /tmp/klog.txt) apparmor lines"
apparmor-loader suggest --profile $P --from /tmp/klog.txt > /tmp/suggest.txt 2>/tmp/suggest.err
check_eq "C: suggest exit code" "$?" 0
sed 's/^/AAVM-INFO suggest| /' /tmp/suggest.txt
# the rules: lines starting with '+', without the marker and the trailing `# N denials; note`
sed -n 's/^+[[:space:]]*//p' /tmp/suggest.txt | sed 's/[[:space:]]*#.*$//' > /tmp/rules.txt
for want in 'capability chown,' 'capability net_raw,' 'network inet raw,' '/tmp/den/secret r,'; do
  grep -qxF "$want" /tmp/rules.txt && pass "C: suggest printed '$want'" || fail "C: suggest did not print '$want' ($(tr '\n' '|' < /tmp/rules.txt))"
done
grep -qE '^/tmp/den/run\.sh r?ix,$' /tmp/rules.txt && pass "C: suggest printed an ix rule for /tmp/den/run.sh ($(grep run.sh /tmp/rules.txt))" \
  || fail "C: no ix rule for /tmp/den/run.sh ($(tr '\n' '|' < /tmp/rules.txt))"
mkdir -p /tmp/v2
{ sed '$d' /tmp/v1/$P; sed 's/^/  /' /tmp/rules.txt; echo "}"; } > /tmp/v2/$P
sed 's/^/AAVM-INFO v2| /' /tmp/v2/$P
apparmor-loader check /tmp/v2 > /tmp/check.out 2>&1 && pass "C: the profile with the suggested rules compiles (apparmor-loader check)" \
  || fail "C: the suggested rules do not compile: $(tr '\n' '|' < /tmp/check.out)"
sha_v1=$(ksha1 $P)
cm_swap $CM /tmp/v2
wait_until 150 sha1_not $P "$sha_v1" && pass "C: kernel sha1 of $P changed after the ..data swap" \
  || fail "C: kernel sha1 of $P unchanged 15 s after the swap (state: $(fetch_profiles; ffield $P state) $(ffield $P error))"
check_eq "C: still enforced" "$(kmode $P)" enforce
fetch_profiles; check_eq "C: /profiles state of $P" "$(pfield $P state)" loaded
metrics_snap /tmp/m.C1; n1=$(den_sum /tmp/m.C1)
check_eq "C: read of /tmp/den/secret now succeeds" "$(op read)" OK
check_eq "C: exec of /tmp/den/run.sh now runs the script" "$(op exec)" script-ran
check_eq "C: raw socket now succeeds" "$(op raw)" OK
check_eq "C: chown now succeeds" "$(op chown)" OK
sleep 1
metrics_snap /tmp/m.C2; n2=$(den_sum /tmp/m.C2)
check_eq "C: denial counter of $P unchanged across the re-run ($n1 before)" "$n2" "$n1"
dmesg | grep "apparmor=\"DENIED\".*profile=\"$P" | tail -n +9 | sed 's/^/AAVM-INFO new denial| /'
# liveness of the pipeline: one still-denied read must count exactly once
r=$(confined $P aatime probe read /tmp/den/storm)
wait_until 50 count_above "$(den open)" "$(metric /tmp/m.C2 "$(den open)")"
metrics_snap /tmp/m.C3
check_eq "C: a still-denied read ($r) is counted: total" "$(den_sum /tmp/m.C3)" $((n2 + 1))

# ---------------------------------------------------------------- D: denial storm
storm() {  # storm LABEL OPERATION [distinct]: ~5 s of denied opens, /healthz probed throughout
  # OPERATION open: the same file (/tmp/den/storm) again and again; mknod + distinct: O_CREAT of a new name
  # each time (/tmp/den/s/storm.N), so every record is distinct: the log limiter and the ring see the worst case
  metrics_snap /tmp/m.$1.0; rss0=$(rss_kb); dl0=$(grep -c 'apparmor_loader::denials' $AGENT_LOG)
  sf=/tmp/den/storm; [ "${3:-}" = distinct ] && sf=/tmp/den/s/storm
  # (not `confined_bg ... > FILE`: ash runs a redirected function call in a subshell, losing BG_PID)
  ( echo -n "exec $P" > /proc/self/attr/exec && exec aatime probe storm $sf 5000 ${3:-} > /tmp/storm.$1.out ) &
  sp=$!; hz_max=0; hz_n=0; hz_bad=0; sleep 0.2
  # (not `kill -0`: a signal to a process under $P needs `signal (receive)` in $P, so it fails and is logged)
  while [ -e /proc/$sp/stat ] && ! grep -q ') Z' /proc/$sp/stat 2>/dev/null; do
    t=$(aatime httpwait $URL/healthz 500 1000); rc=$?
    hz_n=$((hz_n + 1))
    if [ $rc != 0 ]; then hz_bad=$((hz_bad + 1)); else [ "$t" -gt "$hz_max" ] && hz_max=$t; fi
    sleep 0.2
  done
  wait $sp
  info "$1: storm: $(cat /tmp/storm.$1.out)"
  att=$(sed -n 's/.*attempts=\([0-9]*\).*/\1/p' /tmp/storm.$1.out); us=$(sed -n 's/.* us=\([0-9]*\).*/\1/p' /tmp/storm.$1.out)
  failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' /tmp/storm.$1.out)
  rate=$(( att * 1000000 / (us + 1) ))
  check_eq "$1: every storm open was denied" "$failed" "$att"
  [ "$rate" -ge 1000 ] && pass "$1: storm rate $rate denials/s (>= 1000/s; $att in $((us / 1000)) ms)" || fail "$1: storm only $rate/s"
  [ $hz_n -ge 5 ] && [ $hz_bad = 0 ] && pass "$1: /healthz 200 within 500 ms during the storm ($hz_n probes, slowest $((hz_max / 1000)) ms)" \
    || fail "$1: /healthz during the storm: $hz_bad of $hz_n probes over 500 ms (slowest OK $((hz_max / 1000)) ms)"
  sleep 1
  check "$1: agent alive after the storm" agent_alive
  metrics_snap /tmp/m.$1.1
  seen=$(( $(metric /tmp/m.$1.1 "$(den $2)") - $(metric /tmp/m.$1.0 "$(den $2)") ))
  lost=$(( $(metric /tmp/m.$1.1 apparmor_loader_audit_records_lost_total) - $(metric /tmp/m.$1.0 apparmor_loader_audit_records_lost_total) ))
  supp=$(( $(metric /tmp/m.$1.1 apparmor_loader_audit_log_suppressed_total) - $(metric /tmp/m.$1.0 apparmor_loader_audit_log_suppressed_total) ))
  klost=$(dmesg | grep -c 'audit_lost=\|backlog limit exceeded')
  info "$1: counted $seen of $att denials (operation $2); records_lost +$lost; log lines suppressed +$supp; kernel audit-lost messages so far: $klost"
  [ "$seen" -ge 1000 ] && pass "$1: the agent counted $seen storm denials ($((seen * 100 / att))% of $att)" || fail "$1: the agent counted only $seen of $att storm denials"
  rss=$(rss_kb); info "$1: VmRSS before $rss0 KiB, after $rss KiB"
  [ "$rss" -lt 32768 ] && pass "$1: agent VmRSS after the storm $rss KiB < 32 MiB" || fail "$1: agent VmRSS $rss KiB >= 32 MiB"
  get /denials > /tmp/denials.json
  n=$(dj 'records#'); tot=$(dj total); cap=$(dj capacity)
  [ "$n" -le 1000 ] && [ "$cap" = 1000 ] && [ "$tot" -gt "$n" ] && pass "$1: /denials holds $n records (capacity $cap) of $tot received" \
    || fail "$1: /denials holds $n records, capacity $cap, total $tot"
  check_eq "$1: /denials?limit=5 returns 5" "$(fetch_denials '&limit=5'; dj 'records#')" 5
  check_eq "$1: /readyz after the storm" "$(code /readyz)" 200
  dl=$(( $(grep -c 'apparmor_loader::denials' $AGENT_LOG) - dl0 ))
  # at most 10 lines/s with bursts of 50 (README): ~7 s from the start of the storm to here
  [ "$dl" -le 130 ] && pass "$1: $dl denial log lines for the storm (limit 10/s, burst 50; $supp suppressed)" \
    || fail "$1: $dl denial log lines for the storm (want <= 130)"
  [ "${3:-}" != distinct ] || { [ "$supp" -gt 0 ] && pass "$1: distinct denials beyond the rate were suppressed ($supp)" || fail "$1: none suppressed"; }
}
storm D-netlink open
stop_agent
start_agent --profiles $CM --audit-source kmsg
wait_ready 60000 && pass "D: agent ready (kmsg)" || abort "D: agent not ready (kmsg)"
mkdir -p /tmp/den/s
storm D-kmsg mknod distinct
check_eq "D-kmsg: no file was created by the denied O_CREATs" "$(ls /tmp/den/s | wc -l)" 0
get /denials > /tmp/denials.json; check_eq "D-kmsg: /denials source still up" "$(dj source.up)" true
finish
