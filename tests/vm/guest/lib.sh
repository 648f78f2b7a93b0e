# Guest-side helpers for the AppArmor VM scenarios (sourced; busybox sh).
AA=/sys/kernel/security/apparmor
PORT=9741
URL=http://127.0.0.1:$PORT
AAVM_FAILS=0
AAVM_CHECKS=0
AGENT_PID=
AGENT_LOG=/tmp/agent.log

pass() { AAVM_CHECKS=$((AAVM_CHECKS + 1)); echo "AAVM-CHECK PASS $*"; }
fail() { AAVM_CHECKS=$((AAVM_CHECKS + 1)); AAVM_FAILS=$((AAVM_FAILS + 1)); echo "AAVM-CHECK FAIL $*"; }
info() { echo "AAVM-INFO [$(cut -d" " -f1 /proc/uptime)] $*"; }
# check DESC CMD...: pass if CMD succeeds
check() { d=$1; shift; if "$@" >/tmp/.check.out 2>&1; then pass "$d"; else fail "$d (cmd: $*; out: $(head -c 400 /tmp/.check.out | tr '\n' '|'))"; fi; }
# check_fails DESC CMD...: pass if CMD fails
check_fails() { d=$1; shift; if "$@" >/tmp/.check.out 2>&1; then fail "$d (unexpectedly succeeded: $*; out: $(head -c 400 /tmp/.check.out | tr '\n' '|'))"; else pass "$d"; fi; }
# check_eq DESC GOT WANT
# abort MSG: a FAIL, then end the scenario now (no point going on, e.g. the agent is not running)
abort() { fail "$* (scenario aborted)"; finish; }
check_eq() { if [ "$2" = "$3" ]; then pass "$1 (=$2)"; else fail "$1 (got '$2', want '$3')"; fi; }

finish() {
  if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -TERM "$AGENT_PID" 2>/dev/null; sleep 0.3
  fi
  if [ "$AAVM_FAILS" != 0 ] || [ -n "${AAVM_DUMP_LOG:-}" ]; then
    if [ -s "$AGENT_LOG" ]; then
      echo "AAVM-LOG ---- agent log (last 80 lines) ----"
      tail -n 80 "$AGENT_LOG" | sed 's/^/AAVM-LOG /'
      echo "AAVM-LOG ---- agent parser calls (first 30) ----"
      grep 'parser call' "$AGENT_LOG" | head -n 30 | sed 's/^/AAVM-LOG /'
    fi
    echo "AAVM-LOG ---- kernel apparmor lines (last 40) ----"
    dmesg | grep apparmor | tail -n 40 | sed 's/^/AAVM-LOG /'
  fi
  echo "AAVM-SUMMARY checks=$AAVM_CHECKS fails=$AAVM_FAILS"
  [ "$AAVM_FAILS" = 0 ]
  exit $?
}

# kernel views
klist() { cat $AA/profiles; }
kmode() { sed -n "s/^$1 (\(.*\))\$/\1/p" $AA/profiles; }      # mode of profile NAME ('' if absent)
kloaded() { grep -q "^$1 (" $AA/profiles; }
# sha1 of profile NAME from policy/profiles/*/
ksha1() { aatime show "sha1:$1" | tr -d '\n'; }
nprofiles() { wc -l < $AA/profiles; }

# confined execution: run CMD under profile NAME via change_onexec
confined() { p=$1; shift; ( echo -n "exec $p" > /proc/self/attr/exec && exec "$@" ); }
# confined_bg NAME CMD...: same, in the background; BG_PID is the confined process itself
# (`confined NAME CMD &` would fork twice and $! would be the waiting shell)
confined_bg() { p=$1; shift; ( echo -n "exec $p" > /proc/self/attr/exec && exec "$@" ) & BG_PID=$!; }
# profile files in DIR, as the agent sees them (it skips *.yaml, dotfiles, editor temp files)
profile_files() { for f in "$1"/*; do case ${f##*/} in *.yaml|*.yml|*.md|*.txt|README*|*~|*.swp|*.dpkg-*) ;; *) echo "${f##*/}" ;; esac; done; }

# agent control
start_agent() {  # start_agent ARGS... (run subcommand args; profiles dir etc.)
  apparmor-loader run --listen 127.0.0.1:$PORT --log-level debug "$@" >>"$AGENT_LOG" 2>&1 &
  AGENT_PID=$!
  info "agent started pid=$AGENT_PID args: $*"
}
stop_agent() {
  [ -n "$AGENT_PID" ] || return 0
  kill -TERM "$AGENT_PID" 2>/dev/null
  i=0; while kill -0 "$AGENT_PID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  if kill -0 "$AGENT_PID" 2>/dev/null; then fail "agent exits within 10 s of SIGTERM"; kill -9 "$AGENT_PID"; fi
  wait "$AGENT_PID" 2>/dev/null; AGENT_RC=$?
  AGENT_PID=
}
get() { aatime http "$URL$1" 2>/dev/null; }               # body; rc 0 only on 200
code() { aatime http "$URL$1" 2>&1 >/dev/null | sed -n 's/^HTTP //p'; }
agent_alive() { [ -n "$AGENT_PID" ] && [ -e /proc/$AGENT_PID ] && ! grep -q ') Z' /proc/$AGENT_PID/stat 2>/dev/null; }
# wait_url PATH TIMEOUT_MS: until GET PATH is 200; gives up early (with a FAIL) if the agent died
wait_url() {
  _t0=$(aatime now)
  while :; do
    aatime httpwait "$URL$1" 1000 >/dev/null 2>&1 && return 0
    if ! agent_alive; then fail "agent process died (pid $AGENT_PID) while waiting for $1"; return 1; fi
    [ $(( ($(aatime now) - _t0) / 1000 )) -ge "$2" ] && return 1
  done
}
wait_ready() { wait_url /readyz "${1:-60000}"; }
wait_http() { wait_url /healthz "${1:-30000}"; }
# poll until CMD succeeds, up to N tenths of a second
# (gives up at once if an agent was started and has died)
wait_until() {
  n=$1; shift; i=0
  while ! "$@" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -ge "$n" ] && return 1
    if [ -n "$AGENT_PID" ] && ! agent_alive; then fail "agent process died (pid $AGENT_PID) while waiting for: $*"; return 1; fi
    sleep 0.1
  done
  return 0
}

# JSON helpers: fetch GET /profiles into /tmp/profiles.json, query it with `aatime json` (see helpers/aatime.rs)
fetch_profiles() { get /profiles > /tmp/profiles.json; }
pj() { aatime json /tmp/profiles.json "$1" 2>/dev/null; }
# profile NAME's field / file FILE's field ('' if absent). FILE matches by suffix-ish substring.
pfield() { pj "profiles[name=$1].$2"; }
ffield() { pj "files[file=$1].$2" || pj "files[file~$1].$2"; }

# metrics: save a snapshot; list series whose value went up between two snapshots
metrics_snap() { get /metrics > "$1"; }
metrics_increased() {  # metrics_increased BEFORE AFTER [REGEX] -> lines "series before after"
  awk -v re="${3:-.}" 'FNR==1{f++} /^#/ || NF<2 {next} f==1 {b[$1]=$2; next} ($1 ~ re) && ($2+0 > b[$1]+0) {print $1, (b[$1]==""?0:b[$1]), $2}' "$1" "$2"
}

# small test profiles: mkprof FILE NAME [RULE...] (the probe program aatime is always mappable)
mkprof() {
  _f=$1; _n=$2; shift 2
  { echo "profile $_n {"; echo "  /usr/local/bin/aatime mr,"; for _r in "$@"; do echo "  $_r,"; done; echo "}"; } > "$_f"
}
# can PROFILE read|write|exec PATH: does a process confined by PROFILE get to do it?
can() { confined "$1" /usr/local/bin/aatime probe "$2" "$3" >/tmp/.can.out 2>&1; }
# kernel revision (nonblocking single read; '' while revision is still 0)
krev() { aatime show rev:; }
kstatus_count() { dmesg | grep -c "apparmor=\"STATUS\" operation=\"$1\""; }  # profile_load|profile_replace|profile_remove

# kubelet-style ConfigMap volume: DIR/..TS/files, DIR/..data -> ..TS, DIR/NAME -> ..data/NAME
cm_init() {  # cm_init DIR SRC_DIR
  d=$1; ts="..$(date +%Y_%m_%d_%H_%M_%S).$$$(aatime now | tail -c 6)"
  mkdir -p "$d/$ts"; cp -a "$2/." "$d/$ts/"
  ln -s "$ts" "$d/..data"
  for f in "$d/$ts"/*; do b=${f##*/}; ln -s "..data/$b" "$d/$b"; done
}
# cm_stage DIR SRC_DIR: new timestamped dir + ..data_tmp symlink (everything but the rename)
cm_stage() {
  d=$1; CM_OLD=$(readlink "$d/..data")
  CM_NEW="..$(date +%Y_%m_%d_%H_%M_%S).$(aatime now | tail -c 9)"
  mkdir -p "$d/$CM_NEW"; cp -a "$2/." "$d/$CM_NEW/"
  ln -s "$CM_NEW" "$d/..data_tmp"
}
# cm_finish DIR: user-visible symlinks for new names, drop removed names, remove old dir
cm_finish() {
  d=$1
  for f in "$d/$CM_NEW"/*; do b=${f##*/}; [ -L "$d/$b" ] || ln -s "..data/$b" "$d/$b"; done
  for l in "$d"/*; do [ -L "$l" ] && [ ! -e "$l" ] && rm -f "$l"; done
  rm -rf "${d:?}/$CM_OLD"
}
# cm_swap DIR SRC_DIR: the whole kubelet atomic update (rename(2) of ..data_tmp over ..data via mv -T)
cm_swap() { cm_stage "$1" "$2"; mv -T "$1/..data_tmp" "$1/..data"; cm_finish "$1"; }
sha1_is() { [ "$(ksha1 "$1")" = "$2" ]; }
sha1_not() { [ "$(ksha1 "$1")" != "$2" ]; }
file_state_is() { fetch_profiles; [ "$(ffield "$1" state)" = "$2" ]; }
prof_state_is() { fetch_profiles; [ "$(pfield "$1" state)" = "$2" ]; }
