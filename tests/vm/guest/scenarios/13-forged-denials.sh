#!/bin/sh
# Scenario 13 (issue 10.3, issue 11): forged denials on the real kernel. A process that is not
# root-equivalent — uid 65534, no groups, only CAP_AUDIT_WRITE (in Docker's and containerd's default set),
# some of the time in a network namespace of its own like a pod — sends USER_AVC (1107) messages that
# imitate AppArmor denials of a managed profile: `capability sys_admin`, `/etc/shadow r`, and a kernel AVC
# for /etc/forged-nl hidden after a newline. A real denial of the same profile runs alongside.
#  A  the kernel takes 1107 from that process and refuses 1400 (EINVAL); it echoes the USER_AVC to the
#     kernel log with the sender's pid and uid
#  B  agent on netlink: /denials shows only the real denial; ?origin=userspace shows the forged records,
#     marked, with the sender's pid and uid; the denial counter of the profile moves by the real one only
#  C  suggest --live prints the real rule and none of the forged ones; --trust-userspace prints them as '?'
#  D  suggest --from a raw /dev/kmsg dump: the same; from plain dmesg (which proves nothing) every rule is
#     '?', the forged USER_AVC is still left out, the line after its newline is only UNPROVEN
#  E  agent on kmsg: as B
. /aavm/lib.sh
P=forgetest
mkdir -p /tmp/f /tmp/v1
echo secret > /tmp/f/secret
mkprof /tmp/v1/$P $P
CM=/tmp/cm; cm_init $CM /tmp/v1

F_CAP="apparmor=\"DENIED\" operation=\"capable\" class=\"cap\" profile=\"$P\" pid=1 comm=\"forged\" capability=21 capname=\"sys_admin\""
F_SHADOW="apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"$P\" name=\"/etc/shadow\" pid=1 comm=\"forged\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"
# `tail=` takes the quote the kernel closes msg= with, so the forged line parses cleanly as text
F_NL=$(printf 'x\naudit: type=1400 audit(1795834070.095:42): apparmor="DENIED" operation="open" profile="%s" name="/etc/forged-nl" pid=1 comm="forged" requested_mask="r" denied_mask="r" fsuid=0 ouid=0 tail=' $P)
FORGED_RULES='capability sys_admin,|/etc/shadow r,|/etc/forged-nl r,'

metric() { awk -v k="$2" '$1 == k {print $2; f=1} END {if (!f) print 0}' "$1"; }   # metric FILE SERIES
den_sum() { awk -v p="profile=\"$P\"" '/^apparmor_loader_audit_denials_total\{/ && index($1, p) {s += $2} END {print s + 0}' "$1"; }
dj() { aatime json /tmp/denials.json "$1" 2>/dev/null; }
uj() { aatime json /tmp/user.json "$1" 2>/dev/null; }
real_denial() { confined $P aatime probe read /tmp/f/secret >/dev/null 2>&1; }
# forge_all: the three forgeries from uid 65534 with only CAP_AUDIT_WRITE (the first from its own netns);
# FORGE_PIDS gets the senders' pids
forge_all() {
  FORGE_PIDS=
  for t in "$F_CAP" "$F_SHADOW" "$F_NL"; do
    ns=; [ "$t" = "$F_CAP" ] && ns=netns
    out=$(aatime forge 65534 1107 "$t" $ns); rc=$?
    info "forge: $out"
    [ $rc = 0 ] && [ "${out##*ack=}" = 0 ] || fail "$1: the kernel took the USER_AVC ($out)"
    p=${out%% *}; FORGE_PIDS="$FORGE_PIDS ${p#pid=}"
  done
}
user_count_ge() { get /denials > /tmp/st.json && [ "$(aatime json /tmp/st.json source.userspace_reported)" -ge "$1" ]; }
has_user_records() { get "/denials?origin=userspace&profile=$P" > /tmp/user.json && [ "$(uj 'records#')" -ge "$1" ]; }
has_kernel_record() { get "/denials?profile=$P" > /tmp/denials.json && [ "$(dj 'records#')" -ge 1 ]; }
# no_forged_rules FILE: none of the forged rules in a suggest output, in any form
no_forged_rules() { ! grep -Eq "$FORGED_RULES" "$1"; }

# checks one agent round: forged records apart, only the real denial counted (source $2)
check_round() {  # check_round LABEL SOURCE
  metrics_snap /tmp/m.$1.0
  forge_all "$1"
  real_denial
  wait_until 50 has_user_records 3 || fail "$1: 3 userspace-reported records in /denials?origin=userspace within 5 s (have $(uj 'records#'))"
  wait_until 50 has_kernel_record || fail "$1: the real denial in /denials within 5 s"
  sleep 0.5
  get "/denials?profile=$P" > /tmp/denials.json; get "/denials?origin=userspace&profile=$P" > /tmp/user.json
  info "$1: /denials: $(head -c 1200 /tmp/denials.json)"
  info "$1: /denials?origin=userspace: $(head -c 2000 /tmp/user.json)"
  check_eq "$1: /denials source" "$(dj source.source)" "$2"
  check_eq "$1: /denials holds only the real denial of $P" "$(dj 'records#')/$(dj 'records[0].name')/$(dj 'records[0].origin')" "1//tmp/f/secret/kernel"
  check_eq "$1: /denials has no sys_admin record" "$(dj 'records[capname=sys_admin]#')" 0
  check_eq "$1: the userspace ring holds the 3 forgeries" "$(uj 'records#')" 3
  check_eq "$1: each marked userspace" "$(uj 'records[origin=userspace]#')" 3
  check_eq "$1: forged sys_admin: origin/uid/claimed pid" \
    "$(uj 'records[capname=sys_admin].origin')/$(uj 'records[capname=sys_admin].uid')/$(uj 'records[capname=sys_admin].reported_pid')" userspace/65534/1
  pids="$(uj 'records[capname=sys_admin].pid') $(uj 'records[name=/etc/shadow].pid') $(uj 'records[name=/etc/forged-nl].pid')"
  check_eq "$1: the records' pids are the senders' (kernel-stamped), not the pid=1 they wrote" "$pids" "${FORGE_PIDS# }"
  info "$1: sender label (subj) as the kernel stamped it: $(uj 'records[0].sender_label')"
  check_eq "$1: status counts them" "$( [ "$(dj source.userspace_reported)" -ge 3 ] && echo yes)" yes
  metrics_snap /tmp/m.$1.1
  check_eq "$1: denials counted for $P: only the real one" "$(( $(den_sum /tmp/m.$1.1) - $(den_sum /tmp/m.$1.0) ))" 1
  check_eq "$1: no capable series for $P" "$(grep -c "^apparmor_loader_audit_denials_total{profile=\"$P\",operation=\"capable\"}" /tmp/m.$1.1)" 0
  up=$(( $(metric /tmp/m.$1.1 apparmor_loader_audit_userspace_reported_total) - $(metric /tmp/m.$1.0 apparmor_loader_audit_userspace_reported_total) ))
  check_eq "$1: apparmor_loader_audit_userspace_reported_total +3" "$up" 3
  check "$1: the agent logged them as userspace-reported" grep -q 'userspace-reported AppArmor record' "$AGENT_LOG"
}

# ---------------------------------------------------------------- A: what the kernel does
start_agent --profiles $CM
wait_ready 60000 && pass "A: agent ready" || abort "A: agent not ready"
# (phase A's forgery claims another profile, so that it stays out of B's counts)
F_A="apparmor=\"DENIED\" operation=\"capable\" class=\"cap\" profile=\"$P-a\" pid=1 comm=\"forged\" capability=21 capname=\"sys_admin\""
out=$(aatime forge 65534 1400 "$F_A"); info "forge type 1400: $out"
check_eq "A: the forging process is uid 65534 with only CAP_AUDIT_WRITE" "$(echo "$out" | sed -n 's/.* uid=\([0-9]*\) euid=\([0-9]*\) capeff=\([0-9a-f]*\) capprm=\([0-9a-f]*\).*/\1 \2 \3 \4/p')" \
  "65534 65534 0000000020000000 0000000020000000"
check_eq "A: the kernel refuses type 1400 from user space (EINVAL)" "${out##*ack=}" 22
out=$(aatime forge 65534 1107 "$F_A" netns); info "forge type 1107 from a new netns: $out"
check_eq "A: ... and takes USER_AVC (1107), even from another network namespace" "${out##*ack=}" 0
pid=${out%% *}; pid=${pid#pid=}
check "A: the kernel log holds the echo with the sender's pid and uid" sh -c "dmesg | grep 'type=1107' | grep -q 'pid=$pid uid=65534 .*capname=\"sys_admin\"'"
dmesg | grep 'type=1107' | tail -n 1 | sed 's/^/AAVM-INFO kernel echo| /'
wait_until 50 user_count_ge 1 || fail "A: the agent saw the USER_AVC within 5 s"

# ---------------------------------------------------------------- B: agent on netlink
check_round B netlink

# ---------------------------------------------------------------- C: suggest --live
apparmor-loader suggest --profile $P --live --duration 6s --audit-source netlink > /tmp/live.txt 2>/tmp/live.err &
sp=$!; sleep 1.5; forge_all C; real_denial; wait $sp; check_eq "C: suggest --live exit code" "$?" 0
sed 's/^/AAVM-INFO live| /' /tmp/live.txt
check "C: suggest --live prints the real rule, trusted" grep -qE '^\+ +/tmp/f/secret r,' /tmp/live.txt
check "C: suggest --live prints none of the forged rules" no_forged_rules /tmp/live.txt
check "C: suggest --live says it left 3 userspace-reported records out" grep -q 'ignored 3 userspace-reported records' /tmp/live.txt
apparmor-loader suggest --profile $P --live --duration 6s --audit-source netlink --trust-userspace > /tmp/live-trust.txt 2>&1 &
sp=$!; sleep 1.5; forge_all C2; real_denial; wait $sp
sed 's/^/AAVM-INFO live --trust-userspace| /' /tmp/live-trust.txt
check "C: --trust-userspace prints capability sys_admin, marked" grep -qE '^\? +capability sys_admin, .*USERSPACE-REPORTED' /tmp/live-trust.txt
check "C: --trust-userspace prints /etc/shadow r, marked" grep -qE '^\? +/etc/shadow r, .*USERSPACE-REPORTED' /tmp/live-trust.txt
check "C: --trust-userspace still prints the real rule trusted" grep -qE '^\+ +/tmp/f/secret r,' /tmp/live-trust.txt

# ---------------------------------------------------------------- D: suggest from saved logs
timeout 1 cat /dev/kmsg > /tmp/kmsg.txt
dmesg > /tmp/dmesg.txt
info "D: saved $(grep -c 'type=1107' /tmp/kmsg.txt) USER_AVC records in the kmsg dump, $(grep -c . /tmp/dmesg.txt) dmesg lines"
apparmor-loader suggest --profile $P --from /tmp/kmsg.txt > /tmp/s-kmsg.txt 2>&1; check_eq "D: suggest --from kmsg dump exit code" "$?" 0
sed 's/^/AAVM-INFO from kmsg| /' /tmp/s-kmsg.txt
check "D: from the kmsg dump: the real rule, trusted" grep -qE '^\+ +/tmp/f/secret r,' /tmp/s-kmsg.txt
check "D: from the kmsg dump: none of the forged rules" no_forged_rules /tmp/s-kmsg.txt
check "D: from the kmsg dump: the input is judged a kmsg dump" grep -q '^# input /tmp/kmsg.txt (kmsg;' /tmp/s-kmsg.txt
apparmor-loader suggest --profile $P --from /tmp/dmesg.txt > /tmp/s-dmesg.txt 2>&1; check_eq "D: suggest --from dmesg exit code" "$?" 0
sed 's/^/AAVM-INFO from dmesg| /' /tmp/s-dmesg.txt
check "D: from plain dmesg: the input is judged plain text" grep -q '^# input /tmp/dmesg.txt (text;' /tmp/s-dmesg.txt
check_fails "D: from plain dmesg: no rule is trusted" grep -qE '^\+' /tmp/s-dmesg.txt
check "D: from plain dmesg: the real rule only as '?'" grep -qE '^\? +/tmp/f/secret r, .*UNPROVEN' /tmp/s-dmesg.txt
check "D: from plain dmesg: the line after the newline only as '?' UNPROVEN" grep -qE '^\? +/etc/forged-nl r, .*UNPROVEN' /tmp/s-dmesg.txt
check_fails "D: from plain dmesg: no sys_admin or /etc/shadow rule" grep -Eq 'capability sys_admin,|/etc/shadow r,' /tmp/s-dmesg.txt
apparmor-loader suggest --profile $P --from /tmp/kmsg.txt --trust-userspace --json > /tmp/s-json.txt 2>&1
rule_trust() { aatime json /tmp/s-json.txt "rules[rule=$1].trust" 2>/dev/null; }
check_eq "D: JSON, --trust-userspace: capability sys_admin's trust" "$(rule_trust 'capability sys_admin,')" userspace
check_eq "D: JSON: the real rule's trust" "$(rule_trust '/tmp/f/secret r,')" kernel
check_eq "D: JSON: the input's format" "$(aatime json /tmp/s-json.txt 'inputs[0].format' 2>/dev/null)" kmsg

# ---------------------------------------------------------------- E: agent on kmsg
stop_agent
start_agent --profiles $CM --audit-source kmsg
wait_ready 60000 && pass "E: agent ready (kmsg)" || abort "E: agent not ready (kmsg)"
check_round E kmsg
finish
