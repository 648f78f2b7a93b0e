#!/bin/sh
. /aavm/lib.sh
P=/tmp/p; mkdir -p $P; cd $P
sep() { echo; echo "=== $* ==="; }
printf 'profile zeta {\n  /** r,\n  ^hat1 {\n    /tmp/** r,\n  }\n  profile child {\n    /** r,\n  }\n}\n' > f1
printf 'profile beta {\n  /** r,\n}\n' > f2
printf 'profile badone {\n  /** r\n  /tmp/** r,\n}\n' > bad
sep "-N f1 bad f2: stdout only"; apparmor_parser -N f1 bad f2 2>/dev/null; echo "rc=$?"
sep "-N f1 bad f2: stderr only"; apparmor_parser -N f1 bad f2 2>&1 >/dev/null; echo "rc=$?"
sep "-N relative vs absolute path in error"; apparmor_parser -N $P/bad 2>&1 >/dev/null
sep "unexpected char"; printf 'profile pct {\n  /** r,\n  %%foo\n}\n' > pct; apparmor_parser -Q -K pct; echo "rc=$?"
printf 'profile pct2 {\n  /** r,\n  capability foo,\n}\n' > pct2; apparmor_parser -Q -K pct2; echo "rc=$?"
printf 'profile pct3 {\n  /** r,\n' > pct3; apparmor_parser -Q -K pct3; echo "rc=$?"
printf '#include <does/not/exist>\nprofile pct4 {\n}\n' > pct4; apparmor_parser -Q -K pct4; echo "rc=$?"
printf 'profile pct5 {\n  /** r,\n  /x rw,\n  /x Rw,\n}\n' > pct5; apparmor_parser -Q -K pct5; echo "rc=$?"
sep "error on stderr for -r"; apparmor_parser -r -K bad 2>&1 >/dev/null; echo "rc=$?"
sep "revision bump on identical replace"
apparmor_parser -r -K f1 f2; r1=$(dd if=$AA/revision bs=64 count=1 2>/dev/null)
apparmor_parser -r -K f2; r2=$(dd if=$AA/revision bs=64 count=1 2>/dev/null)
echo "after load: $r1 after identical replace of beta: $r2"
sep "children dirs"; ls -la $AA/policy/profiles/zeta.*/profiles/; for d in $AA/policy/profiles/zeta.*/profiles/*/; do echo "$d: name=$(cat $d/name) mode=$(cat $d/mode) sha1=$(cat $d/sha1)"; ls $d; done
sep "listing with -C of a file with children"; apparmor_parser -r -K -C f1; grep zeta $AA/profiles
sep "profile loaded with explicit attach path and name"; printf 'profile named /usr/bin/foo {\n  /** r,\n}\n' > f3; apparmor_parser -N f3; apparmor_parser -r f3; grep named $AA/profiles; cat $AA/policy/profiles/named.*/attach
sep "unconfined flags"; printf 'profile uncf flags=(unconfined) {\n}\n' > f4; apparmor_parser -r f4; echo "rc=$?"; grep uncf $AA/profiles
sep "kill flag / mixed modes"; printf 'profile kl flags=(kill) {\n  /** r,\n}\n' > f5; apparmor_parser -r f5; echo "rc=$?"; grep '^kl ' $AA/profiles
sep "-N of file with include of abstractions"; printf 'include <tunables/global>\nprofile inc {\n  include <abstractions/base>\n}\n' > f6; apparmor_parser -N f6; echo "rc=$?"
sep "-r of 2 files defining the same profile"; printf 'profile beta {\n  /** rw,\n}\n' > f2dup; apparmor_parser -r -K f2 f2dup; echo "rc=$?"
sep "-N of profile name containing //"; printf 'profile a//b {\n}\n' > f7; apparmor_parser -N f7; echo "rc=$?"
sep "hat names: -N on file with only a hat at top"; printf '^tophat {\n}\n' > f8; apparmor_parser -N f8; echo "rc=$?"
sep "profiles listing: order"; cat $AA/profiles
sep "attr/current of a hat-less child when exec'd"; confined zeta cat /proc/self/attr/current; echo
sep "10 MiB file -Q time"; i=0; : > big; while [ $i -lt 2000 ]; do printf 'profile big%d {\n  /** r,\n}\n' $i >> big; i=$((i+1)); done; ls -l big
aatime run /tmp/t.us apparmor_parser -N big >/dev/null; echo "-N 2000 profiles in one file: $(cat /tmp/t.us) us"
echo "AAVM-CHECK PASS probe2 ran"
