#!/bin/sh
# recipe smoke test: a profile loads and is enforced
. /aavm/lib.sh
echo "top secret" > /secret
printf 'profile t {\n  /** rmix,\n  audit deny /secret r,\n}\n' > /tmp/t
check "parser -r loads t" apparmor_parser -r /tmp/t
check "t is in the kernel listing, enforce" grep -q '^t (enforce)' $AA/profiles
check "unconfined read allowed" sh -c 'cat /secret >/dev/null'
check_fails "confined read denied" sh -c 'echo -n "exec t" > /proc/self/attr/exec && exec cat /secret'
check "DENIED line logged" sh -c 'dmesg | grep -q "apparmor=\"DENIED\".*profile=\"t\""'
finish
