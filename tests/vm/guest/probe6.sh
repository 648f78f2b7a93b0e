#!/bin/sh
# Probe: cost of the compile-then-write load path against `apparmor_parser -r` for the same files.
. /aavm/lib.sh
P=/tmp/p; mkdir -p $P; N=40
i=1; while [ $i -le $N ]; do mkprof $P/c$i c$i '/public r'; i=$((i + 1)); done
t() { t0=$(aatime now); "$@" >/dev/null 2>&1; echo "$(( ($(aatime now) - t0) / 1000 )) ms: $*" | cut -c1-100; }
t apparmor_parser -r -K -j4 $P/c*
for n in $(sed -n 's/^\(c[0-9]*\) (.*/\1/p' $AA/profiles); do printf '%s' "$n" > $AA/.remove; done
t apparmor_parser -Q -T -W -L /tmp/cache1 -j4 $P/c*
t apparmor_parser -Q -K -j4 $P/c*
t apparmor_parser -Q -T -W -L /tmp/cache2 -j1 $P/c*
t apparmor_parser -V
M=$(ls -d /tmp/cache1/*/)
t0=$(aatime now); for f in ${M}c*; do dd if=$f of=$AA/.load bs=1M 2>/dev/null; done; echo "$(( ($(aatime now) - t0) / 1000 )) ms: 40 dd writes"
for n in $(sed -n 's/^\(c[0-9]*\) (.*/\1/p' $AA/profiles); do printf '%s' "$n" > $AA/.remove; done
mkdir -p /tmp/st
t0=$(aatime now); start_agent --profiles $P --state-dir /tmp/st --audit-source off
wait_ready 60000; echo "$(( ($(aatime now) - t0) / 1000 )) ms: agent cold start to ready (audit off)"
grep -E "parser call|sync done|serving" $AGENT_LOG | sed 's/^[^ ]* //' | cut -c1-200
echo "AAVM-CHECK PASS probe6 ran"
