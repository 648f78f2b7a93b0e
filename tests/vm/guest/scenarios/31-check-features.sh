#!/bin/sh
# Scenario 31 (issue 14): `apparmor-loader check --features FILE` compiles with the shipped AppArmor 4 parser
# against a kernel feature set of features/ (captured from this suite's VMs): an abi/4.0 `userns,` rule is
# an error naming the file and what is not enforced for Linux 6.1's set, fine for 6.12's; an abi/3.0
# profile, and one with a dbus rule (which no upstream kernel enforces), pass both. Without --features, the
# running kernel decides.
. /aavm/lib.sh
F=/aavm/features
mkdir -p /tmp/p
printf 'abi <abi/4.0>,\nprofile uns {\n  /public r,\n  userns,\n}\n' > /tmp/p/uns
printf 'abi <abi/3.0>,\n#include <tunables/global>\nprofile plain {\n  #include <abstractions/base>\n  /public r,\n}\n' > /tmp/p/plain
printf 'abi <abi/3.0>,\nprofile bus {\n  /public r,\n  dbus send bus=session,\n}\n' > /tmp/p/bus
check "feature sets shipped for 6.1 and 6.12" test -s $F/linux-6.1-amd64 -a -s $F/linux-6.12-amd64
apparmor-loader check --features $F/linux-6.1-amd64 /tmp/p/uns > /tmp/out61 2>&1; rc=$?
info "6.1: $(tr '\n' '|' < /tmp/out61)"
check_eq "check --features linux-6.1: the userns rule fails (exit 1)" "$rc" 1
check "the error names the file and the rule the kernel cannot enforce" grep -q "/tmp/p/uns.*userns rules not enforced" /tmp/out61
apparmor-loader check --features $F/linux-6.12-amd64 /tmp/p/uns > /tmp/out612 2>&1; rc=$?
info "6.12: $(tr '\n' '|' < /tmp/out612)"
check_eq "check --features linux-6.12: the userns rule passes" "$rc" 0
check "an abi/3.0 profile passes against 6.1's set" apparmor-loader check --features $F/linux-6.1-amd64 /tmp/p/plain
check "an abi/3.0 profile passes against 6.12's set" apparmor-loader check --features $F/linux-6.12-amd64 /tmp/p/plain
check "a dbus rule (no upstream kernel enforces one) passes against 6.1's set" apparmor-loader check --features $F/linux-6.1-amd64 /tmp/p/bus
check_fails "a missing feature file is an error" apparmor-loader check --features /nonexistent /tmp/p/plain
apparmor-loader check /tmp/p/uns > /tmp/outk 2>&1; rc=$?
info "running kernel: $(tr '\n' '|' < /tmp/outk)"
if grep -q userns_create $AA/features/namespaces/mask 2>/dev/null || [ -e $AA/features/namespaces/userns_create ]; then
  check_eq "the running kernel $(uname -r) supports userns rules: check passes" "$rc" 0
  check "and the profile loads" apparmor_parser -r /tmp/p/uns
  check_eq "uns enforced" "$(kmode uns)" enforce
else
  check_eq "the running kernel $(uname -r) lacks userns mediation: check fails" "$rc" 1
fi
finish
