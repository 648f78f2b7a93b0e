#!/bin/sh
# Scenario 9: hostile directory: binary junk, a 10 MiB file, a symlink to /etc/shadow, an empty file and 2000
# valid small profiles -> clear errors for the bad ones, all good ones loaded, agent alive and responsive.
. /aavm/lib.sh
echo "top secret" > /secret; echo public > /public
D=/tmp/h; mkdir -p $D
awk -v d=$D 'BEGIN { for (i = 1; i <= 2000; i++) { n = sprintf("h%04d", i); f = d "/" n
  printf "profile %s {\n  /usr/local/bin/aatime mr,\n  /public r,\n}\n", n > f; close(f) } }'
head -c 8192 /bin/busybox > $D/junk.bin
yes '# padding padding padding padding padding padding padding' | head -c 10485760 > $D/big
ln -s /etc/shadow $D/shadow
: > $D/empty
info "directory: $(ls $D | wc -l) entries"
t0=$(aatime now)
start_agent --profiles $D
wait_http 60000 && pass "agent answers HTTP" || abort "agent not answering"
if wait_until 1800 sh -c '[ $(grep -c "^h[0-9]* (enforce)" /sys/kernel/security/apparmor/profiles) -ge 2000 ]'; then
  pass "all 2000 valid profiles in the kernel ($(( ($(aatime now) - t0) / 1000 )) ms)"
else fail "only $(grep -c '^h[0-9]* (enforce)' $AA/profiles) of 2000 valid profiles loaded after 180 s"; fi
wait_until 100 file_state_is junk.bin failed || true
fetch_profiles
for f in junk.bin big shadow empty; do
  info "file $f: state=$(ffield "$f" state) error=$(ffield "$f" error | head -c 200)"
done
for f in junk.bin big shadow; do
  st=$(ffield "$f" state); e=$(ffield "$f" error)
  case $st in failed|refused) pass "$f reported $st" ;; *) fail "$f state '$st', want failed" ;; esac
  [ -n "$e" ] && [ "$e" != null ] && pass "$f has an error message" || fail "$f has no error message"
done
case "$(ffield big error)" in *[Ss]ize*|*large*|*MiB*|*bytes*|*limit*) pass "big: error says it is too large" ;; *) fail "big: error does not mention size" ;; esac
case "$(ffield shadow error)" in *symlink*|*escape*|*outside*) pass "shadow: error says the symlink escapes" ;; *) fail "shadow: error does not mention the symlink escaping" ;; esac
grep -q notarealhash /tmp/profiles.json && fail "/etc/shadow content leaked into /profiles" || pass "/etc/shadow content not leaked"
grep -q notarealhash $AGENT_LOG && fail "/etc/shadow content leaked into the log" || pass "/etc/shadow content not in the log"
est=$(ffield empty state); case $est in loaded|failed) pass "empty file handled (state $est)" ;; *) fail "empty file state '$est'" ;; esac
check_eq "2000 valid files loaded in /profiles" "$(pj 'files[state=loaded]#')" "$([ "$est" = loaded ] && echo 2001 || echo 2000)"
check "agent alive" kill -0 $AGENT_PID
aatime run /tmp/hz.us aatime http $URL/healthz >/dev/null 2>&1 && pass "/healthz 200 ($(( $(cat /tmp/hz.us) / 1000 )) ms)" || fail "/healthz not 200"
[ "$(cat /tmp/hz.us)" -lt 2000000 ] && pass "/healthz answers within 2 s" || fail "/healthz took $(cat /tmp/hz.us) us"
check_eq "/readyz 503 (failed files)" "$(code /readyz)" 503
sha=$(ksha1 h0005); mkprof $D/h0005 h0005 '/public r' '/secret r'; t0=$(aatime now)
wait_until 300 sha1_not h0005 "$sha" && pass "edit among 2000 applied ($(( ($(aatime now) - t0) / 1000 )) ms)" || fail "edit among 2000 not applied in 30 s"
check "edited h0005 enforces the new rule" can h0005 read /secret
vm=$(sed -n 's/^VmRSS:[[:space:]]*//p' /proc/$AGENT_PID/status); info "agent VmRSS with 2000 profiles: $vm"
finish
