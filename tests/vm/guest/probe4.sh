#!/bin/sh
# Probe: cold load of 200 small profiles, agent with --parser-jobs 4 (default) vs 1, vs bare parser -j1/-j4.
. /aavm/lib.sh
echo public > /public
mkdir -p /tmp/cold
awk -v d=/tmp/cold 'BEGIN { for (i = 1; i <= 200; i++) { nm = sprintf("c%04d", i); f = d "/" nm
    printf "profile %s {\n  /usr/local/bin/aatime mr,\n  /public r,\n  /tmp/%s/** rw,\n}\n", nm, nm > f; close(f) } }'
apparmor_parser -Q -K /tmp/cold/c0001
for j in "" -j4; do
  aatime run /tmp/t.us apparmor_parser -r -K $j /tmp/cold/*; echo "AAVM-INFO bare batched '$j': $(( $(cat /tmp/t.us) / 1000 )) ms"
  apparmor_parser -R /tmp/cold/* >/dev/null
done
for pj in "4" "4 --audit-source off" "4" "4 --audit-source off"; do
  rm -rf /tmp/st; : > $AGENT_LOG; t0=$(aatime now)
  start_agent --profiles /tmp/cold --state-dir /tmp/st --parser-jobs $pj
  aatime waitcount c 200 120000 >/dev/null; aatime httpwait $URL/readyz 60000 5 >/dev/null
  echo "AAVM-INFO agent --parser-jobs $pj: ready $(( $(aatime since $t0) / 1000 )) ms; $(grep 'loading 200' $AGENT_LOG | sed 's/.*elapsed_ms=\([0-9]*\).*/parser call \1 ms/')"
  info "threads at ready: $(for t in /proc/$AGENT_PID/task/*; do echo "$(cat $t/comm) $(sed 's/^.*) //' $t/stat | cut -d' ' -f12,13)"; done | tr '\n' ';')"
  stop_agent; apparmor_parser -R /tmp/cold/* >/dev/null
done
pass "probe4 ran"
finish
