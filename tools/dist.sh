#!/bin/bash
# dist.sh — the release archives: target/dist/apparmor-loader-VERSION-ARCH.tar.gz for x86_64 and aarch64,
# each with the static binary, the man pages (`make man`) and the shell completions, plus SHA256SUMS.
# The image stays lean; these are for operators who install the tool on a node or a workstation.
#
#   tools/dist.sh            (after `make dist-bins man`; `make dist` runs them)
#
# Reproducible: every file's time is the last commit's (SOURCE_DATE_EPOCH), owners are 0, the order is
# sorted and gzip stores no name or time, so two runs on the same commit give the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "dist: $*" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
OUT=target/dist
[ -n "$VERSION" ] || die "no version in Cargo.toml"
[ -f target/man/apparmor-loader.1 ] || die "target/man is empty: run \`make man\` first"
HOST_BIN=target/dist-bin/x86_64-unknown-linux-musl/apparmor-loader
[ -x "$HOST_BIN" ] || die "$HOST_BIN missing: run \`make dist-bins\` first"

rm -rf "$OUT" && mkdir -p "$OUT"
for arch in x86_64 aarch64; do
  bin=target/dist-bin/$arch-unknown-linux-musl/apparmor-loader
  [ -x "$bin" ] || die "$bin missing: run \`make dist-bins\` first"
  name=apparmor-loader-$VERSION-$arch
  root=$OUT/stage/$name
  install -D -m 0755 "$bin" "$root/bin/apparmor-loader"
  install -d "$root/share/man/man1"
  install -m 0644 target/man/*.1 "$root/share/man/man1/"
  # The completions come from the flag definitions, the same in every architecture's binary.
  install -d "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" "$root/share/fish/vendor_completions.d"
  "$HOST_BIN" completions bash >"$root/share/bash-completion/completions/apparmor-loader"
  "$HOST_BIN" completions zsh >"$root/share/zsh/site-functions/_apparmor-loader"
  "$HOST_BIN" completions fish >"$root/share/fish/vendor_completions.d/apparmor-loader.fish"
  install -m 0644 README.md "$root/README.md"
  tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner --mode='u+w,go-w' \
    -C "$OUT/stage" -cf - "$name" | gzip -n -9 >"$OUT/$name.tar.gz"
done
rm -rf "$OUT/stage"
(cd "$OUT" && sha256sum ./*.tar.gz | sed 's# \./# #' >SHA256SUMS)
cat "$OUT/SHA256SUMS"
