#!/bin/sh
# Probe: does `-r` continue past a bad file with various -j settings? (is the re-load after a failed batch needed?)
. /aavm/lib.sh
P=/tmp/p; mkdir -p $P; cd $P
sep() { echo; echo "=== $* ==="; }
for n in a b c d e; do mkprof $P/$n p$n '/public r'; done
printf 'profile badone {\n  /** r\n  /tmp/** r,\n}\n' > $P/bad
for j in "" "-j1" "-j 1" "-j4" "-j 4" "--jobs=1"; do
  sep "-r -K $j a b bad c d"
  apparmor_parser -R $P/a $P/b $P/c $P/d >/dev/null 2>&1
  apparmor_parser -r -K $j --subdomainfs $AA $P/a $P/b $P/bad $P/c $P/d; echo "rc=$?"
  echo "loaded: $(sed 's/ (.*//' $AA/profiles | sort | tr '\n' ' ')"
done
sep "-r -K bad first: bad a b"
apparmor_parser -R $P/a $P/b $P/c $P/d >/dev/null 2>&1
apparmor_parser -r -K $P/bad $P/a $P/b; echo "rc=$?"; echo "loaded: $(sed 's/ (.*//' $AA/profiles | sort | tr '\n' ' ')"
sep "-r -K -j1 two bad: a bad b bad c"
cp $P/bad $P/bad2
apparmor_parser -R $P/a $P/b $P/c $P/d >/dev/null 2>&1
apparmor_parser -r -K -j1 $P/a $P/bad $P/b $P/bad2 $P/c; echo "rc=$?"; echo "loaded: $(sed 's/ (.*//' $AA/profiles | sort | tr '\n' ' ')"
sep "-N -j1 a bad b"; apparmor_parser -N -j1 $P/a $P/bad $P/b; echo "rc=$?"
sep "-N -j4 e d c b a (order)"; apparmor_parser -N -j4 $P/e $P/d $P/c $P/b $P/a; echo "rc=$?"
sep "-r with --abort-on-error a bad b"; apparmor_parser -R $P/a $P/b >/dev/null 2>&1; apparmor_parser -r -K --abort-on-error $P/a $P/bad $P/b; echo "rc=$?"; echo "loaded: $(sed 's/ (.*//' $AA/profiles | sort | tr '\n' ' ')"
sep "kernel-side failure mid-batch: profile valid for the parser but rejected by the kernel?"
echo "AAVM-CHECK PASS probe3 ran"
