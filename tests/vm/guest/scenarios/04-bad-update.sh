#!/bin/sh
# Scenario 4: a ConfigMap update with a syntax error -> old rules still enforced, file `stale` with the parser's
# line, a failure metric counts it, readiness stays 200, the rest of the update is applied; fixing recovers.
. /aavm/lib.sh
echo "top secret" > /secret; echo public > /public
mkdir -p /tmp/v1 /tmp/v2 /tmp/v3
mkprof /tmp/v1/cmtest cmtest '/public r'; mkprof /tmp/v1/other other '/public r'
# v2: cmtest has a missing ',' on line 3 (the parser reports it at line 4); other is edited validly
printf 'profile cmtest {\n  /usr/local/bin/aatime mr,\n  /secret r\n  /public r,\n}\n' > /tmp/v2/cmtest
mkprof /tmp/v2/other other '/public r' '/secret r'
mkprof /tmp/v3/cmtest cmtest '/public r' '/tmp/fixed r'; cp /tmp/v2/other /tmp/v3/other
CM=/tmp/cm; cm_init $CM /tmp/v1
start_agent --profiles $CM
wait_ready 60000 && pass "agent ready" || abort "agent not ready"
sha_v1=$(ksha1 cmtest); sha_other1=$(ksha1 other)
metrics_snap /tmp/m0

cm_swap $CM /tmp/v2
wait_until 150 file_state_is cmtest stale && pass "cmtest reported stale after the bad update" \
  || fail "cmtest not stale within 15 s (state '$(ffield cmtest state)')"
wait_until 100 sha1_not other "$sha_other1" && pass "other (valid edit in the same update) was applied" \
  || fail "other held back by cmtest's bad version"
check_eq "kernel still has the old cmtest (sha1)" "$(ksha1 cmtest)" "$sha_v1"
check "old rules enforced: cmtest reads /public" can cmtest read /public
check_fails "old rules enforced: cmtest cannot read /secret" can cmtest read /secret
fetch_profiles
err=$(ffield cmtest error); info "file error: $err"
case $err in *"line 4"*|*"cmtest:4:"*) pass "file error carries the parser's line 4" ;; *) fail "file error lacks line 4: '$err'" ;; esac
case $err in *cmtest*) pass "file error names the file" ;; *) fail "file error does not name the file: '$err'" ;; esac
pst=$(pfield cmtest state); info "profile cmtest state: $pst"
check_eq "profile cmtest state" "$pst" stale
check_eq "/readyz stays 200 with a stale file" "$(code /readyz)" 200
metrics_snap /tmp/m1
inc=$(metrics_increased /tmp/m0 /tmp/m1 'operations_total.*result="fail'); info "failure series that went up: $(echo "$inc" | tr '\n' ';')"
[ -n "$inc" ] && pass "apparmor_loader_operations_total{result=failure} counted the bad version" \
  || fail "no operations_total failure series increased ($(grep -iE 'fail|error' /tmp/m1 | grep -v '^#' | head -5 | tr '\n' ';'))"

cm_swap $CM /tmp/v3
wait_until 150 sha1_not cmtest "$sha_v1" && pass "fixed version loaded" || fail "fixed version not loaded within 15 s"
wait_until 50 file_state_is cmtest loaded && pass "cmtest back to loaded" || fail "cmtest state '$(ffield cmtest state)' after fix"
fetch_profiles
e=$(ffield cmtest error); [ -z "$e" ] || [ "$e" = null ] && pass "error cleared after fix" || fail "error still set after fix: $e"
echo x > /tmp/fixed; check "v3 rules: cmtest reads /tmp/fixed" can cmtest read /tmp/fixed
check_eq "/readyz 200 after fix" "$(code /readyz)" 200
finish
