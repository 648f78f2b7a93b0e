#!/bin/sh
# The running kernel's AppArmor feature set, as `aa-features-abi -x` writes it (what `apparmor_parser -M`
# and `apparmor-loader check --features` read), between markers on the console: `aavm.sh features`
# stores it under features/.
. /aavm/lib.sh
check "aa-features-abi -x" sh -c 'aa-features-abi -x -w /tmp/features'
check "the feature set names the file and policy features" sh -c 'grep -q "^file {" /tmp/features && grep -q "^policy {" /tmp/features'
echo "AAVM-FEATURES-BEGIN"
cat /tmp/features
echo "AAVM-FEATURES-END"
finish
