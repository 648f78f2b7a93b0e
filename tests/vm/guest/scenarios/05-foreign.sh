#!/bin/sh
# Scenario 5: a profile loaded before the agent (a host profile) that the directory also names is untouched
# and reported refused; with --adopt it is replaced. A foreign profile the directory doesn't name stays foreign.
. /aavm/lib.sh
echo "top secret" > /secret; echo public > /public
mkdir -p /tmp/host /tmp/d
mkprof /tmp/host/hostprof hostprof '/public r'
mkprof /tmp/host/docker-default docker-default '/public r'
apparmor_parser -r -K /tmp/host/hostprof /tmp/host/docker-default || fail "loading host profiles by hand"
mkprof /tmp/d/hostprof hostprof '/secret r'        # the directory's (different) version
mkprof /tmp/d/other other '/public r'
sha_host=$(ksha1 hostprof); sha_dd=$(ksha1 docker-default); repl0=$(kstatus_count profile_replace)

start_agent --profiles /tmp/d
wait_http 30000 || abort "agent not answering"
wait_until 300 kloaded other && pass "other loaded" || fail "other not loaded"
wait_until 100 file_state_is hostprof refused && pass "file hostprof reported refused" \
  || fail "file hostprof state '$(ffield hostprof state)', want refused"
check_eq "kernel hostprof untouched (sha1)" "$(ksha1 hostprof)" "$sha_host"
check "host rules still enforced: hostprof reads /public" can hostprof read /public
check_fails "host rules still enforced: hostprof cannot read /secret" can hostprof read /secret
fetch_profiles
info "hostprof file error: $(ffield hostprof error)"
e=$(ffield hostprof error); [ -n "$e" ] && [ "$e" != null ] && pass "refusal has a reason" || fail "refusal without reason"
pst=$(pfield hostprof state); info "profile hostprof state: $pst"
case $pst in refused|foreign) pass "profile hostprof listed as $pst" ;; *) fail "profile hostprof state '$pst'" ;; esac
check_eq "docker-default listed foreign" "$(pfield docker-default state)" foreign
check_eq "docker-default untouched" "$(ksha1 docker-default)" "$sha_dd"
c=$(code /readyz); check_eq "/readyz 503 while a file is refused" "$c" 503
get /readyz > /tmp/r.json; info "readyz body: $(head -c 300 /tmp/r.json)"
grep -q hostprof /tmp/r.json && pass "readyz reasons name hostprof" || fail "readyz reasons do not name hostprof"
check_eq "no profile_replace by the agent" "$(kstatus_count profile_replace)" "$repl0"
stop_agent

start_agent --profiles /tmp/d --adopt 'host*'
wait_ready 60000 && pass "with --adopt 'host*': ready" || abort "with --adopt: not ready"
wait_until 100 sha1_not hostprof "$sha_host" && pass "hostprof replaced with the directory's version" || fail "hostprof not adopted"
check "adopted rules enforced: hostprof reads /secret" can hostprof read /secret
check_fails "adopted rules enforced: hostprof cannot read /public" can hostprof read /public
fetch_profiles
check_eq "profile hostprof state after adopt" "$(pfield hostprof state)" loaded
check_eq "docker-default still foreign" "$(pfield docker-default state)" foreign
check_eq "docker-default still untouched" "$(ksha1 docker-default)" "$sha_dd"
finish
