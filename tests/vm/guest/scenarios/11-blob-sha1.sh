#!/bin/sh
# Scenario 11 (issue 10): the names, modes and sha1s that kernel::blob reads from compiled policy are the
# kernel's. Real distribution profiles (Debian's apparmor-profiles{,-extra}, `make corpus`), the repo's profiles
# and hostile files are loaded with plain `apparmor_parser -r`; `apparmor-loader inspect --kernel` on the same
# files must then find every profile, children included, loaded with the sha1 and mode it computed. Also on the
# real kernel: a complain-mode load (-C) against `inspect --complain`, a file whose `-N` names lie (namespace
# spread over the whole load), and a grandchild that the compiled policy hangs under a foreign profile.
. /aavm/lib.sh
C=/aavm/corpus
[ -d $C/etc/apparmor.d ] || abort "no corpus in the initramfs: run 'make corpus' before 'tests/vm/aavm.sh build'"
# The corpus's own abstractions and (empty) local/ includes, next to the apparmor package's.
(cd $C/etc/apparmor.d && find . -type f) | while read -r f; do
  [ -e "/etc/apparmor.d/$f" ] || { mkdir -p "$(dirname "/etc/apparmor.d/$f")"; cp "$C/etc/apparmor.d/$f" "/etc/apparmor.d/$f"; }
done
D=/tmp/b; mkdir -p $D
for f in $(profile_files /aavm/repo-profiles); do cp /aavm/repo-profiles/$f $D/; done
# Every profile of the corpus costs 1-3 s to compile under TCG: a sample of 24 keeps the scenario near a minute.
n=0
for f in $C/etc/apparmor.d/* $C/usr/share/apparmor/extra-profiles/*; do
  [ -f "$f" ] || continue
  case ${f##*/} in README*) continue ;; esac
  n=$((n + 1)); [ $n -le 4 ] || [ $((n % 7)) -eq 0 ] || continue
  cp "$f" $D/
done
printf 'profile "\\x64ocker-x" {\n  /tmp/** r,\n  profile child {\n    /x r,\n  }\n  ^hat {\n    /y r,\n  }\n}\n/usr/bin/foo flags=(complain) {\n  /etc/foo r,\n}\n' > $D/hostile-multi
printf 'profile "a b" {\n}\nprofile "uni-\303\261" {\n}\nprofile kill-me flags=(kill) {\n}\n' > $D/hostile-quoted
printf 'profile h {\n  ^hat1 {\n  }\n  hat hat2 flags=(complain) {\n  }\n}\n' > $D/hostile-hats
FILES=$(ls -d $D/*)
info "$(echo $FILES | wc -w) files: $(ls $D | tr '\n' ' ')"

# inspect_all OUT ARGS... : run inspect --kernel, keep the text; not_loaded lists what is not `loaded`.
inspect_all() { out=$1; shift; apparmor-loader inspect --kernel "$@" > $out 2>&1; }
not_loaded() { grep '^  ' "$1" | grep -v '  loaded$'; grep ': error:' "$1"; }
has() { grep -Eq "^  $2 +[0-9a-f]{40}  $3  $4\$" "$1"; }   # has OUT MODE NAME STATE

# One compile: the parser loads every file and writes the same policy into a cache (-W -L).
t0=$(aatime now)
apparmor_parser -r -W -L /tmp/cache $FILES > /tmp/load.out 2>&1 || fail "apparmor_parser -r of the set: $(head -c 600 /tmp/load.out | tr '\n' '|')"
info "apparmor_parser -r -W of all files: $(( ($(aatime now) - t0) / 1000 )) ms; kernel lists $(nprofiles) profiles"
t0=$(aatime now)
inspect_all /tmp/inspect.out --binary /tmp/cache/*.0/*; rc=$?
total=$(grep -c '^  ' /tmp/inspect.out)
info "inspect --kernel --binary: $(( ($(aatime now) - t0) / 1000 )) ms, $total profiles, rc=$rc"
bad=$(not_loaded /tmp/inspect.out)
if [ -z "$bad" ] && [ "$rc" = 0 ] && [ "$total" -ge 35 ]; then
  pass "all $total profiles of $(echo $FILES | wc -w) files loaded with the computed sha1 and mode"
else fail "inspect --kernel (rc $rc, $total profiles): $(echo "$bad" | head -n 8 | tr '\n' '|')"; fi
children=$(grep -c '^  .*//.*  loaded$' /tmp/inspect.out)
[ "$children" -ge 4 ] && pass "$children children and hats among them (policy/profiles/*/profiles/*/sha1)" || fail "only $children children checked"
has /tmp/inspect.out kill kill-me loaded && pass "kill mode read from the flags" || fail "kill-me: $(grep kill-me /tmp/inspect.out)"
has /tmp/inspect.out complain h//hat2 loaded && pass "a hat's own complain flag" || fail "h//hat2: $(grep hat2 /tmp/inspect.out)"
# The compiled policy follows the running kernel's features: one pinned value per kernel of the matrix
# (AppArmor 4.1's compile; 6.12 verifies it by sha256, inspect prints the sha1 column either way).
case $(uname -r) in
  6.1.*) docker_x=3843ab72323951531c05471615a70e67b47e79c8 ;;
  *) docker_x=8790618a6b6af971f646fae58d7459567cdf7ca9 ;;
esac
grep -q "^  enforce   $docker_x  docker-x  loaded$" /tmp/inspect.out \
  && pass "the probe's docker-x sha1 again" || fail "docker-x: $(grep docker-x /tmp/inspect.out | head -2)"
# inspect's own compile of the small files (the corpus ones were just proven from the cache).
inspect_all /tmp/own.out $D/hostile-* $D/nginx-web $D/payment-api $D/readonly-workload \
  && [ -z "$(not_loaded /tmp/own.out)" ] && pass "inspect compiling the files itself agrees" || fail "own compile: $(not_loaded /tmp/own.out | head -n 4 | tr '\n' '|')"

# A complain-mode load: the parser caches nothing under -C; inspect --complain sets the flag in the blob.
apparmor_parser -r -C $D/hostile-multi $D/payment-api > /tmp/c.out 2>&1 || fail "-r -C: $(head -c 300 /tmp/c.out)"
inspect_all /tmp/c1.out --complain $D/hostile-multi $D/payment-api && [ -z "$(not_loaded /tmp/c1.out)" ] \
  && pass "complain load: every profile loaded as inspect --complain computed it" || fail "complain: $(not_loaded /tmp/c1.out | head -n 4 | tr '\n' '|')"
inspect_all /tmp/c2.out $D/payment-api
grep -q ' payment-api  different$' /tmp/c2.out && pass "the enforce view of a complain load is 'different'" || fail "enforce view: $(cat /tmp/c2.out | tr '\n' '|')"

# apparmor_parser -r writes each top-level profile separately: `plain` stays in the root namespace, as -N says.
printf 'profile plain {\n}\nprofile :ns2:x {\n}\n' > /tmp/mixed-ns
info "-N of mixed-ns: $(apparmor_parser -N /tmp/mixed-ns | tr '\n' ' ')"
apparmor_parser -r /tmp/mixed-ns > /tmp/m.out 2>&1 || fail "loading mixed-ns: $(head -c 300 /tmp/m.out)"
kloaded plain && pass "apparmor_parser -r: plain in the root namespace" || fail "apparmor_parser -r: no root plain"
# The compiled file written whole (the new load path) is one load: its header namespace takes all of it.
printf 'profile plain2 {\n}\nprofile :ns3:y {\n}\n' > /tmp/mixed2
apparmor_parser -Q -T -W -L /tmp/cache2 /tmp/mixed2 || fail "compiling mixed2"
dd if=$(ls /tmp/cache2/*.0/mixed2) of=$AA/.replace bs=1M 2>/tmp/dd.out || fail "whole write of mixed2: $(cat /tmp/dd.out)"
kloaded plain2 && fail "whole write: plain2 in the root namespace" || pass "whole write: no plain2 in the root namespace"
inspect_all /tmp/m2.out --binary /tmp/cache2/*.0/mixed2
has /tmp/m2.out enforce :ns3://plain2 loaded && pass "whole write: plain2 loaded in ns3, as blob::parse says" || fail "mixed2: $(tr '\n' '|' < /tmp/m2.out)"

# A grandchild: AppArmor 3.x compiles it as `b//c`, which next to a foreign `b` lands inside it (what
# check_self_contained refuses); AppArmor 4 (the shipped parser) keeps its full name `outer//b//c`.
printf 'profile outer {\n  profile b {\n    ^c {\n    }\n  }\n}\n' > /tmp/nested
apparmor_parser -r /tmp/nested > /tmp/n1.out 2>&1; rc=$?
info "nested without b: rc=$rc $(head -c 200 /tmp/n1.out | tr '\n' '|') listing: $(grep -e '^b' -e '^outer' $AA/profiles | tr '\n' ' ')"
apparmor_parser -R /tmp/nested >/dev/null 2>&1
mkprof /tmp/foreign-b b '/public r'
apparmor_parser -r /tmp/foreign-b || fail "loading b"
apparmor_parser -r /tmp/nested > /tmp/n2.out 2>&1
info "after loading nested next to b: $(grep -e '^b' -e '^outer' $AA/profiles | tr '\n' ' ')"
inspect_all /tmp/n3.out /tmp/nested
if apparmor_parser -V | grep -q 'version [0-3]\.'; then
  kloaded 'b//c' && pass "the kernel hung the grandchild under the foreign b (what check_self_contained refuses)" || fail "no b//c: $(cat $AA/profiles | tr '\n' ' ')"
  grep -q 'is a child of "b", which the same file does not define' /tmp/n3.out && pass "inspect refuses the nested file" || fail "inspect nested: $(tr '\n' '|' < /tmp/n3.out)"
else
  kloaded 'outer//b//c' && ! kloaded 'b//c' && pass "AppArmor 4 names the grandchild outer//b//c; the foreign b gets nothing" ||
    fail "grandchild: $(grep -e '^b' -e '^outer' $AA/profiles | tr '\n' ' ')"
  has /tmp/n3.out enforce outer//b//c loaded && pass "inspect reads the grandchild's full name and the kernel's hash" || fail "inspect nested: $(tr '\n' '|' < /tmp/n3.out)"
fi
finish
