#!/bin/sh
# Scenario 7: drift: `apparmor_parser -R NAME` (or a replace) by hand -> the agent restores its version.
. /aavm/lib.sh
echo "top secret" > /secret; echo public > /public
mkdir -p /tmp/d /tmp/hand
mkprof /tmp/d/drift1 drift1 '/public r'; mkprof /tmp/d/drift2 drift2 '/public r'
start_agent --profiles /tmp/d --resync-interval 5s
wait_ready 60000 && pass "agent ready" || abort "agent not ready"
sha1=$(ksha1 drift1); sha2=$(ksha1 drift2)
metrics_snap /tmp/m0
apparmor_parser -R /tmp/d/drift1 && pass "removed drift1 by hand" || fail "apparmor_parser -R failed"
t0=$(aatime now)
if wait_until 200 kloaded drift1; then pass "drift1 restored ($(( ($(aatime now) - t0) / 1000 )) ms after removal; resync interval 5 s)"
else fail "drift1 not restored within 20 s"; fi
check_eq "restored drift1 is the agent's version" "$(ksha1 drift1)" "$sha1"
check "restored drift1 enforces (reads /public)" can drift1 read /public
check_fails "restored drift1 enforces (no /secret)" can drift1 read /secret
mkprof /tmp/hand/drift2 drift2 '/public r' '/secret r'
apparmor_parser -r -K /tmp/hand/drift2 && pass "replaced drift2 by hand" || fail "replace by hand failed"
t0=$(aatime now)
if wait_until 200 sha1_is drift2 "$sha2"; then pass "drift2 restored to the agent's version ($(( ($(aatime now) - t0) / 1000 )) ms)"
else fail "drift2 not restored within 20 s (sha1 $(ksha1 drift2) want $sha2)"; fi
check_fails "restored drift2 enforces (no /secret)" can drift2 read /secret
metrics_snap /tmp/m1
inc=$(metrics_increased /tmp/m0 /tmp/m1 '^apparmor_loader_drift_repairs'); info "drift metric increases: $(echo "$inc" | tr '\n' ';')"
d=$(echo "$inc" | awk '{s += $3 - $2} END {print s+0}')
[ "$d" -ge 2 ] && pass "apparmor_loader_drift_repairs counted both repairs (+$d)" || fail "apparmor_loader_drift_repairs went up by $d, want >= 2"
finish
