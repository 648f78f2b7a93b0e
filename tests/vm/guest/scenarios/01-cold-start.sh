#!/bin/sh
# Scenario 1: cold start on the repo's profiles/: every profile in the kernel with the right mode,
# /readyz goes 503 -> 200, /profiles agrees with the kernel.
. /aavm/lib.sh
D=/tmp/prof; mkdir -p $D; cp -a /aavm/repo-profiles/. $D/
nfiles=$(ls $D | wc -l)
[ "$nfiles" -gt 0 ] && pass "repo profiles/ has $nfiles file(s): $(ls $D | tr '\n' ' ')" || fail "repo profiles/ is empty in the initramfs"
# what the real parser says each file defines (before the agent touches anything)
: > /tmp/expected
for f in $(profile_files $D); do
  f=$D/$f
  names=$(apparmor_parser -N "$f" 2>/tmp/n.err) || fail "apparmor_parser -N $f failed: $(cat /tmp/n.err)"
  for n in $names; do echo "$(basename "$f") $n" >> /tmp/expected; done
done
info "expected names: $(cut -d' ' -f2 /tmp/expected | tr '\n' ' ')"
[ "$(nprofiles)" = 0 ] && pass "kernel starts with no profiles" || fail "kernel not empty at start: $(klist | tr '\n' '|')"

start_agent --profiles $D
# watch /readyz from the first moment the agent answers
seq=""; t=0; got200=0
while [ $t -lt 1200 ]; do
  c=$(code /readyz); c=${c:-000}
  case "$seq" in *" $c") ;; *) seq="$seq $c" ;; esac
  if [ "$c" = 503 ] && [ ! -s /tmp/readyz503.json ]; then get /readyz > /tmp/readyz503.json 2>/dev/null; fi
  [ "$c" = 200 ] && { got200=1; break; }
  agent_alive || abort "agent process died during start-up"
  sleep 0.05; t=$((t + 1))
done
info "readyz sequence:$seq"
case "$seq" in *503*200) pass "/readyz went 503 -> 200" ;; *) fail "/readyz did not go 503 -> 200 (sequence:$seq)" ;; esac
[ $got200 = 1 ] || fail "agent not ready within 60 s"
if [ -s /tmp/readyz503.json ]; then
  info "503 body: $(head -c 300 /tmp/readyz503.json)"
  [ "$(aatime json /tmp/readyz503.json ready)" = false ] && pass "503 body has ready:false" || fail "503 body lacks ready:false: $(head -c 200 /tmp/readyz503.json)"
  [ "$(aatime json /tmp/readyz503.json 'reasons#')" -ge 1 ] 2>/dev/null && pass "503 body lists reasons" || fail "503 body has no reasons"
fi

# the kernel itself
while read -r file name; do
  km=$(kmode "$name")
  if [ -z "$km" ]; then fail "$name (from $file) is not in $AA/profiles"; continue; fi
  case $name in
    *//*) want=$km ;;
    *) if grep -E "^[[:space:]]*(profile[[:space:]]+)?\"?$name\"?[[:space:]].*flags=\([^)]*complain" "$D/$file" >/dev/null; then want=complain; else want=enforce; fi ;;
  esac
  check_eq "kernel mode of $name" "$km" "$want"
done < /tmp/expected
check "/healthz is 200" get /healthz

# /profiles agrees with the kernel
fetch_profiles
check "GET /profiles returns JSON with profiles[]" aatime json /tmp/profiles.json 'profiles#'
ls=$(pj last_sync); [ -n "$ls" ] && [ "$ls" != null ] && pass "last_sync set ($ls)" || fail "last_sync missing/null"
while read -r file name; do
  check_eq "/profiles state of $name" "$(pfield "$name" state)" loaded
  check_eq "/profiles mode of $name = kernel mode" "$(pfield "$name" mode)" "$(kmode "$name")"
  case $name in *//*) continue ;; esac
  pf=$(pfield "$name" file); case $pf in *"$file") pass "/profiles file of $name ($pf)" ;; *) fail "/profiles file of $name is '$pf', want .../$file" ;; esac
  check_eq "/profiles sha256 of $name = sha256 of the file" "$(pfield "$name" sha256)" "$(sha256sum "$D/$file" | cut -d' ' -f1)"
  la=$(pfield "$name" loaded_at); [ -n "$la" ] && [ "$la" != null ] && pass "loaded_at of $name set" || fail "loaded_at of $name missing"
done < /tmp/expected
for f in $(cut -d' ' -f1 /tmp/expected | sort -u); do
  check_eq "/profiles files[] state of $f" "$(ffield "$f" state)" loaded
done
# every kernel profile is in /profiles (foreign would be marked; here none exist)
for n in $(sed 's/ ([a-z]*)$//' $AA/profiles | tr ' ' '\001'); do
  n=$(echo "$n" | tr '\001' ' ')
  [ -n "$(pfield "$n" name)" ] || fail "kernel profile '$n' missing from /profiles"
done
check_eq "number of kernel profiles = number expected" "$(nprofiles)" "$(wc -l < /tmp/expected)"
metrics_snap /tmp/metrics.txt
grep -q '^# TYPE' /tmp/metrics.txt && pass "/metrics is Prometheus text" || fail "/metrics not Prometheus text: $(head -c 200 /tmp/metrics.txt)"
info "metric families: $(grep '^# TYPE' /tmp/metrics.txt | cut -d' ' -f3 | tr '\n' ' ')"
check "agent still running" kill -0 "$AGENT_PID"
finish
