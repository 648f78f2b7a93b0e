#!/bin/sh
# Scenario 2: processes under profiles the agent loaded are denied what the profile denies and allowed what it
# allows (the repo's payment-api with a stand-in /usr/local/bin/node, and a small test profile).
. /aavm/lib.sh
echo "top secret" > /secret; echo public > /public
mkdir -p /app/logs /tmp/enf; echo 'console.log(1)' > /app/index.js
printf '#!/bin/sh\necho pwned\n' > /app/run.sh; chmod 755 /app/run.sh
cp /usr/local/bin/aatime /usr/local/bin/node     # stand-in node: a static probe program
D=/tmp/prof; mkdir -p $D; cp -a /aavm/repo-profiles/. $D/
mkprof $D/enf-test enf-test '/public r' '/tmp/enf/** rw'
start_agent --profiles $D
wait_ready 120000 && pass "agent ready" || abort "agent not ready in 120 s"

check_eq "enf-test in the kernel" "$(kmode enf-test)" enforce
check "unconfined: read /secret allowed" aatime probe read /secret
check "enf-test: read /public allowed" can enf-test read /public
check_fails "enf-test: read /secret denied" can enf-test read /secret
grep -q 'ERR 13' /tmp/.can.out && pass "enf-test: denial is EACCES" || fail "enf-test: /secret not EACCES: $(cat /tmp/.can.out)"
check "enf-test: write /tmp/enf/x allowed" can enf-test write /tmp/enf/x
check_fails "enf-test: write /public denied" can enf-test write /public
check_fails "enf-test: exec /bin/true denied" can enf-test exec /bin/true
confined_bg enf-test /usr/local/bin/aatime probe sleep 5; sp=$BG_PID; sleep 0.3
check_eq "attr/current of a confined process" "$(cat /proc/$sp/attr/current)" "enf-test (enforce)"
kill $sp 2>/dev/null; wait $sp 2>/dev/null
wait_until 20 sh -c 'dmesg | grep -q "apparmor=\"DENIED\" operation=\"open\" \(class=\"file\" \)\?profile=\"enf-test\" name=\"/secret\""' \
  && pass "kernel logged DENIED open /secret for enf-test" || fail "no DENIED line for enf-test /secret"

if kloaded payment-api; then
  check_eq "payment-api mode" "$(kmode payment-api)" enforce
  check "payment-api: read /app/index.js allowed" can payment-api read /app/index.js
  check "payment-api: write /app/logs/app.log allowed" can payment-api write /app/logs/app.log
  check_fails "payment-api: write /app/index.js denied" can payment-api write /app/index.js
  check_fails "payment-api: read /secret (outside its paths) denied" can payment-api read /secret
  check_fails "payment-api: exec /app/run.sh denied" can payment-api exec /app/run.sh
  check_fails "payment-api: exec /bin/sh denied" can payment-api exec /bin/sh
  wait_until 20 sh -c 'dmesg | grep -q "apparmor=\"DENIED\".*profile=\"payment-api\" name=\"/secret\""' \
    && pass "kernel logged DENIED for payment-api reading /secret" || fail "no DENIED line for payment-api /secret"
  wait_until 20 sh -c 'dmesg | grep -q "apparmor=\"DENIED\" operation=\"exec\".*profile=\"payment-api\" name=\"/app/run.sh\""' \
    && pass "kernel logged DENIED exec of /app/run.sh" || fail "no DENIED exec line for /app/run.sh"
else
  info "payment-api not in profiles/ (skipping its checks)"
fi
dmesg | grep 'apparmor="DENIED"' | sed 's/.*audit: /AAVM-INFO /' | head -20
finish
