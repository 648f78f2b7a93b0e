#!/usr/bin/env bash
# Fetches the real-world profile corpus of tests/differential.rs: Debian's apparmor-profiles and
# apparmor-profiles-extra packages, downloaded with `apt-get download` (no install, no root
# needed beyond fresh apt lists) and unpacked under target/corpus/. Cached: a second run with the
# same package versions does nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/corpus
pkgs=(apparmor-profiles apparmor-profiles-extra)

want=""
for p in "${pkgs[@]}"; do
  v=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')
  if [ -z "$v" ] || [ "$v" = "(none)" ]; then
    echo "fetch-corpus: apt does not know $p; run apt-get update" >&2
    exit 1
  fi
  want+="$p=$v "
done
if [ -f "$out/VERSIONS" ] && [ "$(cat "$out/VERSIONS")" = "$want" ]; then
  exit 0
fi

rm -rf "$out"
mkdir -p "$out/debs" "$out/root"
(cd "$out/debs" && apt-get download -q "${pkgs[@]}")
for deb in "$out"/debs/*.deb; do
  dpkg-deb -x "$deb" "$out/root"
done
# Debian's postinst gives every profile an empty local/<name> to include; so do we.
for f in "$out"/root/etc/apparmor.d/* "$out"/root/usr/share/apparmor/extra-profiles/*; do
  [ -f "$f" ] && : > "$out/root/etc/apparmor.d/local/$(basename "$f")"
done
echo "$want" > "$out/VERSIONS"
echo "fetch-corpus: $(find "$out/root" -type f | wc -l) files from $want"
