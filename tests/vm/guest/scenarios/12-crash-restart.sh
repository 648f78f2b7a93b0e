#!/bin/sh
# Scenario 12 (issue 10): SIGKILL the agent at many points of a cold start and of a change, restart it,
# and check after each restart that it owns exactly what it loaded: every file loaded (nothing it loaded is
# refused as foreign), the foreign profile one file also defines never replaced and never claimed.
# Kill points: after k of the profiles are in the kernel (inside the batch of loads), and at fractions of
# the time a cold start takes; for the change, after k profiles carry their new sha1.
. /aavm/lib.sh
D=/tmp/prof; S=/tmp/state; SRC=/tmp/src; N=40
mkdir -p $SRC
i=1; while [ $i -le $N ]; do mkprof $SRC/c$i c$i '/public r'; i=$((i + 1)); done
# A foreign profile, and a file that wants its name: refused on every start, never touched.
mkprof /tmp/foreign crashforeign '/foreign r'
apparmor_parser -r /tmp/foreign || abort "cannot load the foreign profile"
FSHA=$(ksha1 crashforeign)
mkprof $SRC/wantsforeign crashforeign '/mine r'
cm_init $D $SRC

managed_in_kernel() { grep -c '^c[0-9]* (' $AA/profiles; }
clear_managed() {
  for n in $(sed -n 's/^\(c[0-9]*\) (.*/\1/p' $AA/profiles); do printf '%s' "$n" > $AA/.remove; done
  rm -rf $S
}
# wait until the agent has published a sync that saw every file
wait_synced() {
  _i=0
  while [ $_i -lt 600 ]; do
    if get /profiles > /tmp/profiles.json 2>/dev/null && [ "$(pj 'files#')" = $((N + 1)) ] && [ -n "$(pj last_sync)" ]; then return 0; fi
    agent_alive || return 1
    sleep 0.1; _i=$((_i + 1))
  done
  return 1
}
# after_restart WHAT WANT_SHA_FILE: restart, then every promise
after_restart() {
  start_agent --profiles $D --state-dir $S
  if ! wait_synced; then fail "$1: the restarted agent published no full sync"; stop_agent; return; fi
  fetch_profiles
  check_eq "$1: every file loaded" "$(pj 'files[state=loaded]#')" $N
  check_eq "$1: only the foreign-named file refused" "$(pj 'files[state=refused]#')" 1
  check_eq "$1: the foreign-named file's profile is reported refused" "$(pfield crashforeign state)" refused
  check_eq "$1: the foreign profile was never replaced" "$(ksha1 crashforeign)" "$FSHA"
  check_eq "$1: no file failed" "$(pj 'files[state=failed]#')" 0
  if [ -n "$2" ]; then check_eq "$1: c$N carries the new content" "$(pfield c$N sha256)" "$(sha256sum $SRC/c$N | cut -d' ' -f1)"; fi
  check "$1: the state file owns every profile" sh -c "[ \$(grep -c '\"file\": \"c' $S/state.json) -ge $N ]"
  # Owned entries are objects; the names cache lists the name in an array.
  check_fails "$1: the state file does not own the foreign profile" grep -q '"crashforeign": {' $S/state.json
  stop_agent
}
killnow() { kill -KILL "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=; }

# calibration: how long a cold start takes here
t0=$(aatime now)
start_agent --profiles $D --state-dir $S
wait_synced || abort "calibration: no full sync"
T=$(( ($(aatime now) - t0) / 1000 ))
info "cold start to first full sync: ${T} ms"
stop_agent; clear_managed

interrupted=0
for k in 1 8 20 33 39; do
  start_agent --profiles $D --state-dir $S
  aatime waitcount c $k 60000 >/dev/null || fail "cold start: $k profiles never appeared"
  killnow
  info "cold start killed with $(managed_in_kernel) of $N profiles in the kernel"
  after_restart "cold start, killed after $k loads"
  interrupted=$((interrupted + $(grep -c 'confirmed a load that a restart interrupted' $AGENT_LOG)))
  : > $AGENT_LOG; clear_managed
done
for frac in 0 2 4 6 9; do
  start_agent --profiles $D --state-dir $S
  usleep $((T * frac * 100))
  killnow
  info "cold start killed at ${frac}0% of ${T} ms with $(managed_in_kernel) of $N profiles in the kernel"
  after_restart "cold start, killed at ${frac}0%"
  : > $AGENT_LOG; clear_managed
done
check "some kill landed between a load and its confirmation ($interrupted interrupted loads confirmed on restart)" test "$interrupted" -gt 0

# a change of every file, killed part-way through the replaces
start_agent --profiles $D --state-dir $S
wait_synced || abort "before the change: no full sync"
stop_agent
gen=0
for k in 1 15 30; do
  gen=$((gen + 1))
  i=1; while [ $i -le $N ]; do mkprof $SRC/c$i c$i '/public r' "/gen$gen r"; i=$((i + 1)); done
  start_agent --profiles $D --state-dir $S
  wait_synced || fail "change $gen: no sync before the change"
  cm_stage $D $SRC
  aatime swapwait $D/..data_tmp $D/..data "sha1:c$k" 60000 >/dev/null || fail "change $gen: c$k never got its new policy"
  killnow
  cm_finish $D
  after_restart "change $gen, killed after c$k was replaced" new
  : > $AGENT_LOG
done
finish
