#!/bin/sh
# Scenario 20: the Node Feature Discovery feature file follows what the kernel really holds: one label per
# loaded managed profile (a name that cannot be a label under its hash), the all-profiles-loaded summary,
# through a load, a broken file, a profile removed behind the agent's back, complain mode, and an unload
# of everything (the file goes); `clear-node-features` removes it by hand.
. /aavm/lib.sh
FD=/tmp/features.d; FF=$FD/apparmor-loader
P=profile.apparmor.feature.node.kubernetes.io; ALL=apparmor.feature.node.kubernetes.io/all-profiles-loaded
labels() { grep -v '^#' "$FF" 2>/dev/null; }
has_label() { labels | grep -qx "$1"; }
mkdir -p $FD /tmp/nf
echo public > /public
mkprof /tmp/nf/alpha alpha '/public r'; mkprof /tmp/nf/beta beta '/public r'
mkprof /tmp/nf/gamma /usr/bin/gamma '/public r'
H=sha256-$(printf %s /usr/bin/gamma | sha256sum | cut -c1-32)
start_agent --profiles /tmp/nf --unload-removed --resync-interval 2s --node-features-file $FF
wait_ready 60000 && pass "agent ready" || abort "agent not ready"
wait_until 50 test -f $FF || fail "no feature file after the first sync"
want=$(printf '%s\n' "$ALL=true" "$P/$H=enforce" "$P/alpha=enforce" "$P/beta=enforce")
check_eq "labels after the first sync" "$(labels | sort)" "$(echo "$want" | sort)"
for p in alpha beta /usr/bin/gamma; do check "$p labelled and really in the kernel" kloaded $p; done
grep -q "labelled by its hash" $AGENT_LOG && pass "the hashed name was logged" || fail "no log line for the hashed name"
check_eq "no temp file left in features.d" "$(ls -A $FD)" "apparmor-loader"

# A file that does not compile: the summary turns false, what is loaded keeps its labels.
echo 'profile broken { /public r, ' > /tmp/nf/broken
wait_until 100 has_label "$ALL=false" && pass "a broken file turns all-profiles-loaded false" || fail "labels: $(labels | tr '\n' ' ')"
check "alpha keeps its label" has_label "$P/alpha=enforce"
check_fails "nothing labelled for the broken file" sh -c "grep -q broken $FF"
rm /tmp/nf/broken
wait_until 100 has_label "$ALL=true" && pass "the summary is true again once the file is gone" || fail "labels: $(labels | tr '\n' ' ')"

# Someone removes beta from the kernel: the agent restores it and the label stays true to the kernel.
echo -n beta > $AA/.remove
wait_until 100 kloaded beta && pass "beta restored" || fail "beta not restored"
sleep 1
check "beta still labelled after the repair" has_label "$P/beta=enforce"
check "summary true after the repair" has_label "$ALL=true"

# Deleting a file unloads its profile (--unload-removed) and drops its label.
rm /tmp/nf/beta
wait_until 100 sh -c "! grep -q '^beta (' $AA/profiles" && pass "beta unloaded" || fail "beta still loaded"
wait_until 50 sh -c "! grep -q '/beta=' $FF" && pass "beta's label gone" || fail "labels: $(labels | tr '\n' ' ')"
stop_agent

# Complain mode: the value is the kernel's mode.
start_agent --profiles /tmp/nf --unload-removed --resync-interval 2s --node-features-file $FF --default-mode complain
wait_until 300 has_label "$P/alpha=complain" && pass "alpha labelled complain" || fail "labels: $(labels | tr '\n' ' ')"
check_eq "the kernel agrees" "$(kmode alpha)" complain

# Everything deleted: every profile unloaded, the file removed.
rm /tmp/nf/alpha /tmp/nf/gamma
wait_until 150 sh -c "! test -e $FF" && pass "feature file removed once nothing is managed" || fail "file still there: $(labels | tr '\n' ' ')"
check_fails "alpha unloaded" kloaded alpha
check_eq "features.d empty" "$(ls -A $FD)" ""
stop_agent
check_eq "SIGTERM exit code" "$AGENT_RC" 0

# By hand: clear-node-features removes a file the agent left.
echo "$ALL=true" > $FF
check "clear-node-features succeeds" apparmor-loader clear-node-features --node-features-file $FF
check_fails "the file is gone" test -e $FF
finish
