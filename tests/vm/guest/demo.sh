#!/bin/sh
# make demo: the agent on the repo's profiles/ in a real AppArmor kernel, what got loaded, one denial enforced.
. /aavm/lib.sh
say() { echo "AAVM-DEMO $*"; }
echo "top secret" > /secret
mkdir -p /app/logs; echo 'console.log("hi")' > /app/index.js
printf '#!/bin/sh\necho pwned\n' > /app/run.sh; chmod 755 /app/run.sh
cp /usr/local/bin/aatime /usr/local/bin/node      # stand-in for node: a tiny static probe program
say "kernel: $(uname -r), AppArmor enabled=$(cat /sys/module/apparmor/parameters/enabled), $(apparmor_parser -V | head -1)"
say "profiles dir: $(profile_files /aavm/repo-profiles | tr '\n' ' ')"
say "\$ apparmor-loader run --profiles /aavm/repo-profiles --listen 127.0.0.1:$PORT &"
AGENT_LOG=/tmp/agent.log
apparmor-loader run --profiles /aavm/repo-profiles --listen 127.0.0.1:$PORT >$AGENT_LOG 2>&1 & AGENT_PID=$!
t0=$(aatime now)
wait_ready 60000 || abort "agent not ready"
say "ready after $(( $(aatime since $t0) / 1000 )) ms"
grep -E ' INFO ' $AGENT_LOG | sed 's/^[^ ]* *INFO /  agent: /' | head -8 | sed 's/^/AAVM-DEMO /'
say ""
say "\$ wget -q -O - http://127.0.0.1:$PORT/profiles"
{ get /profiles; echo; } | sed 's/},{/},\n  {/g; s/\],"files":\[/],\n "files":[\n  /; s/"profiles":\[/"profiles":[\n  /' | sed 's/^/AAVM-DEMO /'
say ""
say "\$ cat /sys/kernel/security/apparmor/profiles"
sed 's/^/AAVM-DEMO   /' $AA/profiles
say ""
if kloaded payment-api; then
  say "A process confined by payment-api (node stand-in) tries things:"
  for op in "read /app/index.js" "read /secret" "exec /app/run.sh"; do
    r=$(confined payment-api /usr/local/bin/node probe $op 2>&1)
    say "  node $op -> $r"
  done
  sleep 0.2
  say "kernel audit log:"
  dmesg | grep 'apparmor="DENIED"' | sed 's/.*audit: /AAVM-DEMO   /' | tail -3
  confined payment-api /usr/local/bin/node probe read /secret >/dev/null 2>&1 && fail "payment-api read /secret was allowed" || pass "denial enforced by the kernel"
else
  mkprof /tmp/demo-prof demo '/public r'
  say "(payment-api not in profiles/; using a one-line demo profile)"
  check_fails "denial enforced by the kernel" can demo read /secret
fi
stop_agent
finish
