#!/bin/sh
# Scenario 32 (issue 14): the agent with the shipped AppArmor 4 parser and a profile using an abi/4.0-only
# rule (`userns,`). Where the kernel mediates user namespaces (6.12) it loads and is enforced; where it
# does not (6.1) the file fails with an error naming it and what the kernel cannot enforce, nothing of it is
# loaded (never a profile silently missing the rule), and the other files load as usual. A dbus rule, which no
# upstream kernel enforces and the distributions' profiles are full of, is not such an error: it loads on both.
. /aavm/lib.sh
mkdir -p /tmp/p
printf 'abi <abi/4.0>,\nprofile uns {\n  /usr/local/bin/aatime mr,\n  /public r,\n  userns,\n}\n' > /tmp/p/uns
mkprof /tmp/p/plain plain '/public r'
printf 'abi <abi/3.0>,\nprofile bus {\n  /usr/local/bin/aatime mr,\n  /public r,\n  dbus send bus=session,\n}\n' > /tmp/p/bus
echo public > /public
start_agent --profiles /tmp/p
plain_loaded() { fetch_profiles && [ "$(pfield plain state)" = loaded ]; }
wait_until 600 plain_loaded && pass "plain loaded" || abort "plain not loaded"
fetch_profiles
if grep -q userns_create $AA/features/namespaces/mask 2>/dev/null; then
  check_eq "kernel $(uname -r) mediates userns: uns loaded" "$(ffield uns state)" loaded
  check_eq "uns enforced" "$(kmode uns)" enforce
  check "uns: read /public allowed" can uns read /public
else
  check_eq "kernel $(uname -r) lacks userns mediation: uns failed" "$(ffield uns state)" failed
  err=$(ffield uns error); info "error: $err"
  check "the error names the file and what is not enforced" sh -c "echo \"\$1\" | grep -q '/tmp/p/uns.*userns rules not enforced'" _ "$err"
  check_fails "uns is not in the kernel" kloaded uns
fi
check_eq "plain enforced" "$(kmode plain)" enforce
check_eq "a dbus rule is no error: bus loaded ($(ffield bus error))" "$(ffield bus state)" loaded
check_eq "bus enforced" "$(kmode bus)" enforce
stop_agent
finish
