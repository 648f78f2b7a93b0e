#!/bin/sh
# Scenario 30 (issue 14): the image's parser and the agent on this platform and kernel — the one scenario the
# arm64 VM runs, and part of the amd64 matrix. The agent loads a profile (enforced), a ConfigMap swap replaces
# it (the kernel's hash — sha1 before Linux 6.8, sha256 since — changes, the new rules are enforced), the agent
# verifies both loads against the kernel's hash, and an abi/4.0 profile compiles with the shipped parser.
. /aavm/lib.sh
info "kernel $(uname -r) $(uname -m); $(apparmor_parser -V | head -1)"
check "the shipped parser is AppArmor 4" sh -c 'apparmor_parser -V | grep -q "version 4\."'
check "apparmor-loader runs on $(uname -m)" apparmor-loader --version
echo "top secret" > /secret; echo public > /public
mkdir -p /tmp/v1 /tmp/v2
mkprof /tmp/v1/smoke smoke '/public r'
mkprof /tmp/v2/smoke smoke '/secret r'
CM=/tmp/cm; cm_init $CM /tmp/v1
start_agent --profiles $CM
wait_ready 90000 && pass "agent ready" || abort "agent not ready"
check_eq "smoke loaded, enforce" "$(kmode smoke)" enforce
hash_file=$(ls $AA/policy/profiles/*/ | grep -m1 -x -e sha1 -e sha256)
case $(uname -r) in
  6.1.*) check_eq "Linux 6.1 hashes policy with SHA-1" "$hash_file" sha1 ;;
  *) check_eq "Linux $(uname -r) hashes policy with SHA-256" "$hash_file" sha256 ;;
esac
check "v1: smoke reads /public" can smoke read /public
check_fails "v1: smoke cannot read /secret" can smoke read /secret
before=$(ksha1 smoke)
cm_swap $CM /tmp/v2
wait_until 300 sha1_not smoke "$before" && pass "the swap replaced smoke in the kernel" || fail "smoke unchanged 15 s after the swap"
check_fails "v2: smoke cannot read /public" can smoke read /public
check "v2: smoke reads /secret" can smoke read /secret
wait_until 100 prof_state_is smoke loaded && pass "/profiles: smoke loaded (the load verified against the kernel's hash)" ||
  fail "/profiles state of smoke: $(pfield smoke state) $(pfield smoke error)"
check "the agent owns smoke with the kernel's hash ($hash_file)" grep -q "kernel_sha1\"[: ]*\"$(ksha1 smoke)" /var/lib/apparmor-loader/state.json
printf 'abi <abi/4.0>,\nprofile abi4 {\n  userns,\n  /public r,\n}\n' > /tmp/abi4
check "an abi/4.0 profile with a userns rule compiles" apparmor_parser -Q -K /tmp/abi4
stop_agent
check_eq "agent exit status after SIGTERM" "$AGENT_RC" 0
check_eq "smoke stays enforced after the agent exits" "$(kmode smoke)" enforce
finish
