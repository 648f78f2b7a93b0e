#!/bin/sh
# Throwaway probe of apparmor_parser 3.0.8 / kernel 6.1 behaviour (answers the lead's questions).
. /aavm/lib.sh
P=/tmp/p; mkdir -p $P; cd $P
sep() { echo; echo "=== $* ==="; }
sep "-V"; apparmor_parser -V; echo "rc=$?"
cat > $P/f1 <<'X'
profile zeta {
  /** r,
  ^hat1 {
    /tmp/** r,
  }
  profile child /bin/true {
    /** r,
  }
}
profile alpha flags=(complain) {
  /** r,
}
/usr/bin/attached {
  /** r,
}
profile "with space" {
  /** r,
}
X
cat > $P/f2 <<'X'
profile beta {
  /** r,
}
X
cat > $P/bad <<'X'
profile badone {
  /** r
  /tmp/** r,
}
X
cat > $P/bad2 <<'X'
profile badtwo {
  /tmp/% r,
}
X
cat > $P/bad3 <<'X'
profile badthree {
  /foo rwq,
}
X
printf 'profile apparmor-loader.boundary {}\n' > $P/sentinel
sep "-N f1 f2"; apparmor_parser -N $P/f1 $P/f2; echo "rc=$?"
sep "-N f2 f1 (order)"; apparmor_parser -N $P/f2 $P/f1; echo "rc=$?"
sep "-N f1 sentinel f2 sentinel"; apparmor_parser -N $P/f1 $P/sentinel $P/f2 $P/sentinel; echo "rc=$?"
sep "-N f1 bad f2"; apparmor_parser -N $P/f1 $P/bad $P/f2; echo "rc=$?"
sep "-N bad f2"; apparmor_parser -N $P/bad $P/f2; echo "rc=$?"
sep "-N f2 missing f1"; apparmor_parser -N $P/f2 $P/missing $P/f1; echo "rc=$?"
sep "-N empty file"; : > $P/empty; apparmor_parser -N $P/empty; echo "rc=$?"
sep "-N comment-only file"; printf '# nothing\n' > $P/comment; apparmor_parser -N $P/comment; echo "rc=$?"
sep "-N binary junk"; head -c 2000 /bin/busybox > $P/junk; apparmor_parser -N $P/junk 2>&1 | head -c 600; echo "rc=$?"
sep "-Q -K bad"; apparmor_parser -Q -K $P/bad; echo "rc=$?"
sep "-Q -K bad2"; apparmor_parser -Q -K $P/bad2; echo "rc=$?"
sep "-Q -K bad3"; apparmor_parser -Q -K $P/bad3; echo "rc=$?"
sep "-Q -K f1"; apparmor_parser -Q -K $P/f1; echo "rc=$?"
sep "revision before any load (fresh fd, nonblocking)"; aatime pollrev $AA/revision 10
sep "-r -K --subdomainfs f2 bad f1 (batch with a bad file in the middle)"
apparmor_parser -r -K --subdomainfs $AA $P/f2 $P/bad $P/f1; echo "rc=$?"
cat $AA/profiles
sep "-r f2 missing (nonexistent in batch)"; apparmor_parser -r -K $P/f2 $P/missing; echo "rc=$?"
sep "-r -j 2 f1 f2 (identical content)"; apparmor_parser -r -K -j 2 $P/f1 $P/f2; echo "rc=$?"
sep "dmesg status lines so far"; dmesg | grep 'apparmor="STATUS"' | sed 's/.*audit: //'
sep "policy/ tree"
ls -la $AA/policy/ $AA/policy/profiles/ 
for d in $AA/policy/profiles/*/; do echo "-- $d"; ls -la $d; for f in name mode attach sha1 raw_sha1; do [ -f $d$f ] && echo "$f: $(cat $d$f)"; done; done
sep "nested children dirs"; find $AA/policy -maxdepth 6 | head -80
sep "sha1/dir after replacing beta with same content"
before=$(ls -d $AA/policy/profiles/beta*); b1=$(cat $before/sha1); echo "dir=$before sha1=$b1"
apparmor_parser -r -K $P/f2; echo "rc=$?"
after=$(ls -d $AA/policy/profiles/beta*); echo "dir=$after sha1=$(cat $after/sha1) raw_sha1=$(cat $after/raw_sha1)"
dmesg | grep 'apparmor="STATUS"' | tail -2 | sed 's/.*audit: //'
sep "sha1/dir after replacing beta with changed content"
printf 'profile beta {\n  /** rw,\n}\n' > $P/f2b; apparmor_parser -r -K $P/f2b; echo "rc=$?"
after=$(ls -d $AA/policy/profiles/beta*); echo "dir=$after sha1=$(cat $after/sha1)"
sep "sha1/mode after -C (complain) same content"
apparmor_parser -r -K -C $P/f2b; echo "rc=$?"; after=$(ls -d $AA/policy/profiles/beta*); echo "dir=$after sha1=$(cat $after/sha1) mode=$(cat $after/mode)"; grep beta $AA/profiles
sep "revision poll: waiter then a load"
( aatime pollrev $AA/revision 5000 > /tmp/pollrev.out ) &
sleep 0.5; printf 'profile gamma {\n /** r,\n}\n' > $P/g; apparmor_parser -r -K $P/g; wait; cat /tmp/pollrev.out
sep "revision poll with nothing changing (1 s timeout)"; aatime pollrev $AA/revision 1000
sep "revision: read twice on the same fd via dd"; dd if=$AA/revision bs=64 count=1 2>/dev/null; echo
sep "-R stub removes by name (with children)"
printf 'profile "zeta" {}\n' > $P/stub; apparmor_parser -R --subdomainfs $AA $P/stub; echo "rc=$?"; grep -c zeta $AA/profiles
printf 'profile "with space" {}\n' > $P/stub2; apparmor_parser -R $P/stub2; echo "rc=$?"; grep -c 'with space' $AA/profiles
sep "-R not loaded"; apparmor_parser -R $P/stub; echo "rc=$?"
sep "-R two stubs one missing"; apparmor_parser -R $P/stub $P/g; echo "rc=$?"; grep -c gamma $AA/profiles
sep "profiles listing now"; cat $AA/profiles
sep "confined process: attr/current format"; confined alpha cat /proc/self/attr/current; echo
sep "removing a profile while a process is confined"
printf 'profile inuse {\n /** rmix,\n}\n' > $P/inuse; apparmor_parser -r $P/inuse
(echo -n "exec inuse" > /proc/self/attr/exec && exec sleep 3) & sp=$!; sleep 0.3
echo "current of sleeper: $(cat /proc/$sp/attr/current)"
apparmor_parser -R $P/inuse; echo "rc=$?"
echo "current of sleeper after -R: $(cat /proc/$sp/attr/current)"; kill $sp
sep "busybox mv -T is rename(2)?"; mkdir -p /tmp/cm/..a /tmp/cm/..b; ln -s ..a /tmp/cm/..data; ln -s ..b /tmp/cm/..data_tmp
mv -T /tmp/cm/..data_tmp /tmp/cm/..data; echo "rc=$? ..data -> $(readlink /tmp/cm/..data)"; ls -la /tmp/cm
sep "kernel features"; ls $AA/features
echo "AAVM-CHECK PASS probe ran"
exit 0
