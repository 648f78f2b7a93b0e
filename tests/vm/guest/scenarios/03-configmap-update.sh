#!/bin/sh
# Scenario 3: the kubelet's atomic ConfigMap update (new ..<ts> dir, ..data_tmp symlink, rename(2) over ..data,
# old dir removed) with an edited profile -> the kernel enforces the new rules, agent not restarted.
. /aavm/lib.sh
echo "top secret" > /secret; echo public > /public
mkdir -p /tmp/v1 /tmp/v2
mkprof /tmp/v1/cmtest cmtest '/public r'; mkprof /tmp/v1/other other '/public r'
mkprof /tmp/v2/cmtest cmtest '/secret r'; cp /tmp/v1/other /tmp/v2/other      # v2: /public denied, /secret allowed
CM=/tmp/cm; cm_init $CM /tmp/v1
info "configmap layout: $(ls -la $CM | tr '\n' '|')"
start_agent --profiles $CM
wait_ready 60000 && pass "agent ready" || abort "agent not ready"
pid0=$AGENT_PID
check "v1: cmtest reads /public" can cmtest read /public
check_fails "v1: cmtest cannot read /secret" can cmtest read /secret
sha_v1=$(ksha1 cmtest); sha_other=$(ksha1 other); rev0=$(krev)
info "sha1 v1=$sha_v1 other=$sha_other"

swap_and_wait() {  # swap_and_wait SRC WANT_DIFFERENT_FROM_SHA -> sets NEWSHA, prints elapsed
  before=$2; cm_stage $CM "$1"; t0=$(aatime now)
  mv -T $CM/..data_tmp $CM/..data; cm_finish $CM
  i=0; while [ "$(ksha1 cmtest)" = "$before" ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i + 1)); done
  NEWSHA=$(ksha1 cmtest); ELAPSED_MS=$(( ($(aatime now) - t0) / 1000 ))
}
swap_and_wait /tmp/v2 "$sha_v1"
[ "$NEWSHA" != "$sha_v1" ] && pass "swap 1: kernel has the new cmtest (${ELAPSED_MS} ms after rename)" || fail "swap 1: kernel cmtest unchanged after 15 s"
sha_v2=$NEWSHA
check_fails "v2: cmtest now cannot read /public" can cmtest read /public
check "v2: cmtest now reads /secret" can cmtest read /secret
check_eq "other (unchanged file) not replaced" "$(ksha1 other)" "$sha_other"
check_eq "..data points to the new dir" "$(readlink $CM/..data)" "$CM_NEW"
[ ! -e "$CM/$CM_OLD" ] && pass "old timestamped dir removed" || fail "old dir still there"
check "agent not restarted (same pid alive)" kill -0 $pid0
sleep 0.3; fetch_profiles
check_eq "/profiles sha256 of cmtest = new file" "$(pfield cmtest sha256)" "$(sha256sum $CM/cmtest | cut -d' ' -f1)"
check_eq "/profiles state of cmtest" "$(pfield cmtest state)" loaded

# back and forth, each swap checked against the kernel
for k in 2 3 4 5 6; do
  if [ $((k % 2)) = 0 ]; then src=/tmp/v1 want=$sha_v1; else src=/tmp/v2 want=$sha_v2; fi
  swap_and_wait $src "$(ksha1 cmtest)"
  check_eq "swap $k: kernel sha1 of cmtest (${ELAPSED_MS} ms)" "$NEWSHA" "$want"
done
check "after swap 6 (v1): cmtest reads /public" can cmtest read /public
check_fails "after swap 6 (v1): cmtest cannot read /secret" can cmtest read /secret

# burst: 5 swaps back to back, final content v2 -> kernel must end on v2
for k in 1 2 3 4; do if [ $((k % 2)) = 1 ]; then cm_swap $CM /tmp/v2; else cm_swap $CM /tmp/v1; fi; done
cm_swap $CM /tmp/v2
wait_until 150 sha1_is cmtest "$sha_v2"
check_eq "burst of 5 swaps: kernel ends on the last content" "$(ksha1 cmtest)" "$sha_v2"
sleep 1; check_eq "burst: stays on the last content" "$(ksha1 cmtest)" "$sha_v2"
check_eq "only one timestamped dir left" "$(ls -a $CM | grep -c '^\.\.[0-9]')" 1

# a swap that adds a file and removes none
mkdir -p /tmp/v3; cp /tmp/v2/* /tmp/v3/; mkprof /tmp/v3/added added '/public r'
cm_swap $CM /tmp/v3
wait_until 150 kloaded added && pass "file added by a swap is loaded" || fail "added profile not loaded"
check "agent still the same process" kill -0 $pid0
finish
