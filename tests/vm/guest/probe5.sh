#!/bin/sh
# Probe: compile to a binary policy and load it through securityfs ourselves.
# - cache layout of `-Q -T -W -L DIR` against the running kernel's features;
# - the kernel's per-profile sha1 versus the blob (printed as hex for the host to recompute);
# - .load of an existing name, .replace, .remove (with and without a trailing NUL);
# - hostile names: escapes decoded by the parser.
. /aavm/lib.sh
P=/tmp/p; C=/tmp/cache; mkdir -p $P $C; cd $P
sep() { echo; echo "=== $* ==="; }
printf 'profile "\\x64ocker-x" {\n  /tmp/** r,\n  profile child { /x r, }\n  ^hat { /y r, }\n}\n/usr/bin/foo flags=(complain) {\n  /etc/foo r,\n}\n' > $P/multi
printf 'profile one {\n  /tmp/** r,\n}\n' > $P/one
printf 'profile bad {\n  /x rwq,\n}\n' > $P/bad
sep "-N multi"; apparmor_parser -N $P/multi
sep "-Q -T -W -L $C one bad multi"; apparmor_parser -Q -T -W -L $C -j2 $P/one $P/bad $P/multi; echo "rc=$?"
find $C -type f | sort | while read f; do echo "$f $(wc -c < $f)"; done
M=$(ls -d $C/*/ | head -1)
sep "load one via .load"
dd if=${M}one of=$AA/.load bs=1M 2>&1 | tail -1; echo "rc=$?"
grep one $AA/profiles
for d in $AA/policy/profiles/*; do echo "K $(cat $d/name) $(cat $d/sha1) $(cat $d/mode)"; done
sep ".load again (exists)"; dd if=${M}one of=$AA/.load bs=1M 2>&1 | tail -1
sep ".replace again"; dd if=${M}one of=$AA/.replace bs=1M 2>&1 | tail -1
sep "load multi via .replace"; dd if=${M}multi of=$AA/.replace bs=1M 2>&1 | tail -1
cat $AA/profiles
for d in $AA/policy/profiles/*; do echo "K $(cat $d/name) $(cat $d/sha1) $(cat $d/mode) raw=$(cat $d/raw_sha1 2>/dev/null)"; done
sep "blob hex one"; od -An -v -tx1 ${M}one | tr -d ' \n'; echo
sep "blob hex multi"; od -An -v -tx1 ${M}multi | tr -d ' \n'; echo
sep "short write of multi (4096 bytes at a time)"; dd if=${M}multi of=$AA/.replace bs=4096 2>&1 | tail -2
sep "-r compile vs cache: kernel sha1 after apparmor_parser -r -K one"
apparmor_parser -r -K $P/one; for d in $AA/policy/profiles/*; do [ "$(cat $d/name)" = one ] && echo "K one $(cat $d/sha1)"; done
sep ".remove one with NUL"; printf 'one\0' > $AA/.remove; echo "rc=$?"; grep -c '^one ' $AA/profiles
sep ".remove docker-x without NUL"; printf 'docker-x' > $AA/.remove; echo "rc=$?"; cat $AA/profiles
sep ".remove missing"; printf 'nope' > $AA/.remove; echo "rc=$?"
sep "garbage to .replace"; echo garbage > $AA/.replace; echo "rc=$?"
sep "revision"; cat $AA/revision
echo "AAVM-CHECK PASS probe5 ran"
