#!/bin/bash
# The release archives (tools/dist.sh): each holds a static binary of its architecture, one man page per
# subcommand, the completions, and nothing else; the checksums match; a second run gives the same bytes.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "test-dist: FAIL: $*" >&2; exit 1; }

tools/dist.sh >/dev/null
first=$(cat target/dist/SHA256SUMS)
(cd target/dist && sha256sum -c --quiet SHA256SUMS) || fail "SHA256SUMS does not match the archives"
subcommands=$(target/dist-bin/x86_64-unknown-linux-musl/apparmor-loader --help |
  sed -n '/^Commands:/,/^$/p' | awk 'NR>1 && $1 != "" && $1 != "help" {print $1}')
[ "$(echo "$subcommands" | wc -l)" -ge 10 ] || fail "too few subcommands in --help: $subcommands"
for arch in x86_64 aarch64; do
  archive=$(ls target/dist/apparmor-loader-*-$arch.tar.gz) || fail "no $arch archive"
  dir=$(mktemp -d)
  tar -xzf "$archive" -C "$dir"
  root=$(echo "$dir"/apparmor-loader-*)
  machine=$(readelf -h "$root/bin/apparmor-loader" | sed -n 's/ *Machine: *//p')
  case $arch in
    x86_64) [[ $machine == *X86-64* ]] || fail "$arch binary is $machine" ;;
    aarch64) [[ $machine == *AArch64* ]] || fail "$arch binary is $machine" ;;
  esac
  readelf -l "$root/bin/apparmor-loader" | grep -q INTERP && fail "$arch binary is not static"
  for sub in $subcommands; do
    grep -q "^\.TH apparmor-loader-$sub 1" "$root/share/man/man1/apparmor-loader-$sub.1" || fail "$arch: no man page for $sub"
  done
  # The archives are where operators get the kubectl plugin (the image carries the node build only).
  if [ $arch = x86_64 ]; then
    ln -s "$root/bin/apparmor-loader" "$dir/kubectl-apparmor_loader"
    "$dir/kubectl-apparmor_loader" --help 2>&1 | grep -q "^Usage: kubectl-apparmor_loader" ||
      fail "$arch: the binary is not the kubectl plugin when called kubectl-apparmor_loader"
  fi
  grep -q "complete -F" "$root/share/bash-completion/completions/apparmor-loader" || fail "$arch: bash completion"
  grep -q "^#compdef apparmor-loader" "$root/share/zsh/site-functions/_apparmor-loader" || fail "$arch: zsh completion"
  [ -s "$root/share/fish/vendor_completions.d/apparmor-loader.fish" ] || fail "$arch: fish completion"
  unexpected=$(cd "$root" && find . -type f | grep -v -e '^./bin/apparmor-loader$' -e '^./share/man/man1/apparmor-loader' \
    -e '^./share/bash-completion/' -e '^./share/zsh/' -e '^./share/fish/' -e '^./README.md$' || true)
  [ -z "$unexpected" ] || fail "$arch archive holds more than it should: $unexpected"
  bad_owner=$(tar -tvzf "$archive" | awk '$2 != "0/0"' | head -1)
  [ -z "$bad_owner" ] || fail "$arch: not owned by 0/0: $bad_owner"
  rm -rf "$dir"
done
tools/dist.sh >/dev/null
[ "$(cat target/dist/SHA256SUMS)" = "$first" ] || fail "a second run gave other bytes: not reproducible"
echo "test-dist: ok ($(echo "$subcommands" | wc -l) man pages per archive, reproducible)"
