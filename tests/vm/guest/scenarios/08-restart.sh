#!/bin/sh
# Scenario 8: kill the agent and start it again with nothing changed -> zero loads/replaces in the kernel
# (policy revision, profile_load/profile_replace audit lines and per-profile sha1 all unchanged).
. /aavm/lib.sh
D=/tmp/prof; mkdir -p $D; cp -a /aavm/repo-profiles/. $D/
for i in 1 2 3; do mkprof $D/small$i small$i '/public r'; done
start_agent --profiles $D
wait_ready 120000 && pass "agent ready" || abort "agent not ready"
check "state file written" test -s /var/lib/apparmor-loader/state.json
snapshot() { for n in $(sed 's/ ([a-z]*)$//' $AA/profiles | grep -v //); do echo "$n $(ksha1 "$n")"; done | sort; }
for sig in TERM KILL; do
  sleep 0.5
  if [ $sig = TERM ]; then stop_agent; check_eq "SIGTERM: exit 0" "$AGENT_RC" 0
  else kill -KILL $AGENT_PID; wait $AGENT_PID 2>/dev/null; AGENT_PID=; fi
  n0=$(nprofiles); check "after SIG$sig profiles stay loaded ($n0)" test "$n0" -ge 4
  rev0=$(krev); ld0=$(kstatus_count profile_load); rp0=$(kstatus_count profile_replace); rm0=$(kstatus_count profile_remove)
  snapshot > /tmp/snap0
  start_agent --profiles $D
  wait_ready 60000 && pass "restart after SIG$sig: ready" || abort "restart after SIG$sig: not ready"
  sleep 2
  check_eq "after SIG$sig restart: policy revision unchanged" "$(krev)" "$rev0"
  check_eq "after SIG$sig restart: no profile_load" "$(kstatus_count profile_load)" "$ld0"
  check_eq "after SIG$sig restart: no profile_replace" "$(kstatus_count profile_replace)" "$rp0"
  check_eq "after SIG$sig restart: no profile_remove" "$(kstatus_count profile_remove)" "$rm0"
  snapshot > /tmp/snap1
  cmp -s /tmp/snap0 /tmp/snap1 && pass "after SIG$sig restart: every sha1 unchanged" || fail "sha1s changed: $(diff /tmp/snap0 /tmp/snap1 | tr '\n' '|')"
  fetch_profiles
  check_eq "after SIG$sig restart: all files loaded" "$(pj 'files[state=loaded]#')" "$(profile_files $D | wc -l)"
done
finish
