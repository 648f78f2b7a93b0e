#!/bin/sh
# Scenario 14: a replace keeps the children the new policy lacks (the kernel carries them over), so a
# hat or child profile deleted from its file would go on enforcing old rules. The agent removes such a
# child after the verified replace — but not while a task is confined by it; then once that task exits.
. /aavm/lib.sh
echo public > /public
mkdir -p /tmp/d
cat > /tmp/d/web <<'P'
profile web {
  /usr/local/bin/aatime mr,
  /public r,
  ^admin {
    /public rw,
  }
  profile pdf {
    /usr/local/bin/aatime mr,
    /public r,
    signal (receive) peer=unconfined,
  }
}
P
start_agent --profiles /tmp/d --resync-interval 2s
wait_ready 60000 && pass "agent ready" || abort "agent not ready"
check "web//admin loaded" kloaded web//admin
check "web//pdf loaded" kloaded web//pdf
confined_bg web//pdf /usr/local/bin/aatime probe sleep 600; sp=$BG_PID; sleep 0.3
check_eq "a process confined by the child web//pdf" "$(cat /proc/$sp/attr/current)" "web//pdf (enforce)"
old=$(ksha1 web)
mkprof /tmp/d/web web '/public r'
wait_until 300 sh -c '! grep -q "^web//admin (" /sys/kernel/security/apparmor/profiles' \
  && pass "the dropped hat web//admin left the kernel" || fail "web//admin still loaded: $(klist | tr '\n' ' ')"
check "web replaced" sh -c "[ \"\$(ksha1 web)\" != '$old' ]"
check "web still loaded" kloaded web
check "the dropped child in use stays" kloaded web//pdf
sleep 3
check "still there after a resync (3 s)" kloaded web//pdf
check_eq "its task is still confined" "$(cat /proc/$sp/attr/current)" "web//pdf (enforce)"
kill $sp && pass "signalled the confined process" || fail "cannot signal the confined process"; wait $sp 2>/dev/null
wait_until 300 sh -c '! grep -q "^web//pdf (" /sys/kernel/security/apparmor/profiles' \
  && pass "web//pdf removed once its task exited" || fail "web//pdf still loaded 30 s after its task exited"
check "web itself stays" kloaded web
check_eq "/readyz 200" "$(code /readyz)" 200
finish
