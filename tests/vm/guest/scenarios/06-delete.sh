#!/bin/sh
# Scenario 6: a deleted file: without --unload-removed its profile stays (orphaned); with it, it is removed,
# but not while a process is confined by it (in-use), and then once that process has exited.
. /aavm/lib.sh
echo public > /public
mkdir -p /tmp/d
mkprof /tmp/d/keep keep '/public r'; mkprof /tmp/d/gone gone '/public r' 'signal (receive) peer=unconfined'
start_agent --profiles /tmp/d
wait_ready 60000 && pass "agent ready" || abort "agent not ready"
kloaded gone || fail "gone not loaded at start"
rm /tmp/d/gone
wait_until 150 prof_state_is gone orphaned && pass "gone reported orphaned" || fail "gone state '$(pfield gone state)', want orphaned"
check "orphaned profile still in the kernel" kloaded gone
sleep 1; check "still in the kernel 1 s later" kloaded gone
stop_agent
check_eq "SIGTERM exit code" "$AGENT_RC" 0

confined_bg gone /usr/local/bin/aatime probe sleep 600; sp=$BG_PID; sleep 0.3
check_eq "a process confined by gone" "$(cat /proc/$sp/attr/current)" "gone (enforce)"
start_agent --profiles /tmp/d --unload-removed --resync-interval 2s
wait_until 200 prof_state_is gone in-use && pass "gone reported in-use" || fail "gone state '$(pfield gone state)', want in-use"
check "in-use profile not removed" kloaded gone
sleep 3
check "still not removed after a resync (3 s)" kloaded gone
check_eq "the confined process is still confined" "$(cat /proc/$sp/attr/current)" "gone (enforce)"
kill $sp && pass "signalled the confined process" || fail "cannot signal the confined process"; wait $sp 2>/dev/null; t0=$(aatime now)
if wait_until 300 sh -c '! grep -q "^gone (" /sys/kernel/security/apparmor/profiles'; then
  pass "gone removed after its last process exited ($(( ($(aatime now) - t0) / 1000 )) ms)"
else fail "gone still loaded 30 s after the process exited"; fi
check "keep still loaded" kloaded keep
fetch_profiles
g=$(pfield gone state); [ -z "$g" ] && pass "gone no longer in /profiles" || info "gone still in /profiles with state $g"
check_eq "/readyz 200" "$(code /readyz)" 200
finish
