#!/bin/sh
# Scenario 21 (issue 17): a real profile set with broken files, shared includes and a reboot. Debian's
# distribution profiles (a sample: each costs 1-3 s to compile under TCG) plus two files of our own that
# include a shared abstraction, plus two broken files (a syntax error, a missing required include).
# - cold start: one parser compile for everything; the broken files are `failed`, naming file and line;
# - idle with a 1 s resync: no parser at all (failures are remembered by identity);
# - an edit of the shared abstraction: one parser compile, exactly its two dependants replaced;
# - a "reboot" (every profile removed from the kernel; the state dir kept): the agent loads every profile
#   from its compiled-policy cache with no parser compile, each with the sha1 a fresh compile gave;
# - a truncated cache entry is never loaded: that file alone is compiled again.
. /aavm/lib.sh
C=/aavm/corpus
[ -d $C/etc/apparmor.d ] || abort "no corpus in the initramfs: run 'make corpus' before 'tests/vm/aavm.sh build'"
(cd $C/etc/apparmor.d && find . -type f) | while read -r f; do
  [ -e "/etc/apparmor.d/$f" ] || { mkdir -p "$(dirname "/etc/apparmor.d/$f")"; cp "$C/etc/apparmor.d/$f" "/etc/apparmor.d/$f"; }
done
D=/tmp/set; mkdir -p $D
n=0
for f in $C/etc/apparmor.d/* $C/usr/share/apparmor/extra-profiles/*; do
  [ -f "$f" ] || continue
  case ${f##*/} in README*) continue ;; esac
  n=$((n + 1)); [ $((n % 10)) -eq 3 ] || continue
  cp "$f" $D/
done
mkdir -p /etc/apparmor.d/abstractions
printf '  /etc/corp/** r,\n' > /etc/apparmor.d/abstractions/corp-base
for p in corp-a corp-b; do
  printf 'abi <abi/3.0>,\ninclude <tunables/global>\nprofile %s {\n  include <abstractions/base>\n  include <abstractions/corp-base>\n  /tmp/%s r,\n}\n' $p $p > $D/$p
done
printf 'profile broken-syntax {\n  /tmp/x r\n}\n' > $D/broken-syntax
printf 'profile broken-include {\n  include <local/no-such-file>\n  /tmp/y r,\n}\n' > $D/broken-include
NFILES=$(profile_files $D | wc -l)
info "$NFILES files: $(ls $D | tr '\n' ' ')"

P=$(command -v apparmor_parser)
printf '#!/bin/sh\necho "$*" >> /tmp/parser.calls\nexec %s "$@"\n' "$P" > /tmp/counting-parser
chmod +x /tmp/counting-parser
compiles() { grep -c '^-Q' /tmp/parser.calls 2>/dev/null || echo 0; }
snapshot() { for n in $(sed 's/ ([a-z]*)$//' $AA/profiles | grep -v //); do echo "$n $(ksha1 "$n")"; done | sort; }
settled() { fetch_profiles; [ "$(pj 'files[state=loaded]#')" = "$((NFILES - 2))" ] && [ "$(pj 'files[state=failed]#')" = 2 ]; }

t0=$(aatime now)
start_agent --profiles $D --parser /tmp/counting-parser --resync-interval 1s
wait_until 3000 settled && pass "cold start: every good file loaded, both broken ones failed" || abort "cold start did not settle: $(head -c 800 /tmp/profiles.json)"
info "cold start of $NFILES files: $(( ($(aatime now) - t0) / 1000 )) ms, $(nprofiles) profiles in the kernel"
check_eq "cold start: one parser compile" "$(compiles)" 1
ffield broken-syntax error | grep -q 'broken-syntax:3' && pass "the syntax error names file and line" || fail "error: $(ffield broken-syntax error)"
ffield broken-include error | grep -q 'no-such-file' && pass "the missing include is named" || fail "error: $(ffield broken-include error)"
ffield corp-a includes | grep -q 'abstractions/corp-base' && pass "/profiles lists the includes" || fail "includes: $(ffield corp-a includes)"

sleep 5
check_eq "idle with broken files and a 1 s resync: no parser compile" "$(compiles)" 1

snapshot > /tmp/before-edit
a0=$(ksha1 corp-a); b0=$(ksha1 corp-b)
printf '  /etc/corp/** rw,\n' > /etc/apparmor.d/abstractions/corp-base.new
mv /etc/apparmor.d/abstractions/corp-base.new /etc/apparmor.d/abstractions/corp-base
changed() { [ "$(ksha1 corp-a)" != "$a0" ] && [ "$(ksha1 corp-b)" != "$b0" ]; }
wait_until 600 changed && pass "abstraction edit: both dependants replaced" || fail "abstraction edit not applied"
sleep 2
check_eq "abstraction edit: one parser compile" "$(compiles)" 2
snapshot > /tmp/after-edit
check_eq "abstraction edit: nothing else replaced" "$(diff /tmp/before-edit /tmp/after-edit | grep -c '^[-+][^-+]')" 4
stop_agent

reboot_kernel() { for n in $(sed 's/ ([a-z]*)$//' $AA/profiles | grep -v //); do printf '%s' "$n" > $AA/.remove; done; }
reboot_kernel
check_eq "reboot: the kernel is empty" "$(nprofiles)" 0
t0=$(aatime now)
start_agent --profiles $D --parser /tmp/counting-parser --resync-interval 1h
wait_until 1200 settled && pass "after the reboot: every good file loaded" || abort "reboot did not settle"
info "reboot, cache warm: every profile in the kernel after $(( ($(aatime now) - t0) / 1000 )) ms"
check_eq "after the reboot: no parser compile (all from the cache)" "$(compiles)" 2
snapshot > /tmp/after-reboot
cmp -s /tmp/after-edit /tmp/after-reboot && pass "after the reboot: every sha1 is the fresh compile's" || fail "sha1s differ: $(diff /tmp/after-edit /tmp/after-reboot | tr '\n' '|')"
stop_agent

entry=$(ls /var/lib/apparmor-loader/policy-cache/* | head -1)
head -c 100 "$entry" > /tmp/cut && cat /tmp/cut > "$entry"
reboot_kernel
start_agent --profiles $D --parser /tmp/counting-parser --resync-interval 1h
wait_until 1200 settled && pass "truncated cache entry: every good file loaded" || abort "truncated entry: did not settle"
check_eq "truncated cache entry: one parser compile" "$(compiles)" 3
check_eq "truncated cache entry: that compile has one file" "$(grep '^-Q' /tmp/parser.calls | tail -1 | tr ' ' '\n' | grep -c '/files/')" 1
snapshot > /tmp/after-damage
cmp -s /tmp/after-edit /tmp/after-damage && pass "truncated cache entry: same sha1s" || fail "sha1s differ: $(diff /tmp/after-edit /tmp/after-damage | tr '\n' '|')"
finish
