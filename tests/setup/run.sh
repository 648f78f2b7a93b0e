#!/usr/bin/env bash
# tests/setup/run.sh: the README's commands set up a fresh machine by themselves (tools/prereqs.sh).
#
# 1. A fresh machine of this kind: a clean clone of this repo (committed work only), a scratch rustup home
#    whose only toolchain is a `stable` of the pinned release without the musl target, a fresh target dir
#    (the crate cache in CARGO_HOME is shared). There, `make` of demo's prerequisites, read from the
#    Makefile (tools/prereqs.sh demo, then the musl build), with RUSTUP_AUTO_INSTALL=0 so that the script,
#    not rustup on first use, has to bring the target. The build uses the dev profile without debug info:
#    the set-up is the same, and it takes 1.5 to 3 minutes on 2 cores instead of about 5 for release with LTO.
#    The scratch home is a hard-link copy of the real one (a second or so); the files rustup rewrites in
#    place are copied for real, and the test checks that the real home did not change.
# 2. When it cannot install (no apt-get, not root, no pip, no cargo, no rustup): one line, exit 1, nothing run.
#
# Ends with "N passed, M failed"; exits non-zero on any failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MUSL=x86_64-unknown-linux-musl
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "PASS $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; printf '    %s\n' "$@"; }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "expected: $3" "got:      $2"; fi; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"  # the unprivileged run below reads the clone

channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$REPO/rust-toolchain.toml")
host=$(cd / && rustup show | sed -n 's/^Default host: //p')
tc=$channel-$host
real_home=$(rustup show home)
real_tc=$(readlink -f "$real_home/toolchains/$tc")
[ -d "$real_tc" ] || { bad "pinned toolchain" "$tc is not installed (make test-setup installs it first)"; echo "$pass passed, $fail failed"; exit 1; }

# What the scratch home's rustup could reach in the real one: rustup's own files, every file of the
# toolchain (path and size), the real toolchains/ entries (no link made there) and what rustup lists.
fingerprint() {
  {
    find "$real_tc/lib/rustlib" -maxdepth 1 -type f -exec sha256sum {} +
    (cd "$real_tc" && find . -printf '%y %s %p\n' | sort)
    ls -l "$real_home/toolchains"
    RUSTUP_HOME=$real_home rustup target list --installed --toolchain "$tc"
    RUSTUP_HOME=$real_home rustup component list --installed --toolchain "$tc"
  } | sha256sum
}
before=$(fingerprint)

# --- 1. a fresh machine ----------------------------------------------------------------------------------
git clone -q "$REPO" "$tmp/repo"
scratch=$tmp/rustup
mkdir -p "$scratch/toolchains"
cp -al "$real_tc" "$scratch/toolchains/stable-$host"
# rustup rewrites these in place (its component list, the manifests): a hard link would carry that into the
# real home.
find "$scratch/toolchains/stable-$host/lib/rustlib" -maxdepth 1 -type f -exec sh -c \
  'for f; do cp -p "$f" "$f.copy" && mv "$f.copy" "$f"; done' _ {} +
export RUSTUP_HOME=$scratch
rustup target remove --toolchain "stable-$host" "$MUSL" >/dev/null 2>&1
if rustup target list --installed --toolchain "stable-$host" | grep -qxF "$MUSL" ||
   rustup toolchain list | grep -q "^$tc"; then
  bad "scratch home" "still has $MUSL or $tc: the test would prove nothing"
fi

read -ra setup <<<"$( (make -C "$tmp/repo" -qp 2>/dev/null || true) | sed -n 's/^demo: //p')"
[ ${#setup[@]} -gt 0 ] || bad "demo's prerequisites" "none found in the Makefile's database"
t0=$SECONDS
rc=0
(cd "$tmp/repo" && env -u CARGO_TARGET_DIR -u RUSTUP_TOOLCHAIN RUSTUP_AUTO_INSTALL=0 CARGO_PROFILE_DEV_DEBUG=0 \
  make --no-print-directory "${setup[@]}" MUSL_PROFILE=dev) >"$tmp/setup.log" 2>&1 || rc=$?
echo "    (make ${setup[*]} MUSL_PROFILE=dev in a clean clone: rc $rc, $((SECONDS - t0)) s)"
if [ $rc = 0 ]; then ok "make ${setup[*]} succeeds in a clean clone"; else bad "make ${setup[*]} succeeds in a clean clone" "rc $rc" "$(tail -n 20 "$tmp/setup.log")"; fi
# (the other targets of rust-toolchain.toml, e.g. the arm64 one, come in the same command)
if grep -q "^prereqs: rustup target add --toolchain $tc .*\b$MUSL\b" "$tmp/setup.log"; then
  ok "tools/prereqs.sh added the $MUSL target"
else
  bad "tools/prereqs.sh added the $MUSL target" "$(grep '^prereqs:' "$tmp/setup.log" || echo 'no prereqs: line in the log')"
fi
if rustup target list --installed --toolchain "$tc" 2>/dev/null | grep -qxF "$MUSL"; then
  ok "$tc has $MUSL in the scratch home"
else
  bad "$tc has $MUSL in the scratch home" "$(rustup toolchain list; rustup target list --installed --toolchain "$tc" 2>&1)"
fi
bin=$tmp/repo/target/$MUSL/debug/apparmor-loader
if [ -x "$bin" ] && file -b "$bin" | grep -qE 'static(ally|-pie) linked' && "$bin" --version >/dev/null; then
  ok "the static agent runs"
else
  bad "the static agent runs" "$bin: $(file -b "$bin" 2>&1)"
fi
again=$(cd "$tmp/repo" && RUSTUP_AUTO_INSTALL=0 make -s prereqs-demo 2>&1) && rc=0 || rc=$?
check "a second run is silent" "$rc:$again" "0:"
unset RUSTUP_HOME
check "the real rustup home did not change" "$(fingerprint)" "$before"

# --- 2. cannot install -----------------------------------------------------------------------------------
# A PATH with what the script itself uses, and nothing it would check for or install with.
bin=$tmp/bin
mkdir -p "$bin"
for c in bash env sed tr grep awk mktemp rm id tail cat dirname ln; do ln -s "$(command -v "$c")" "$bin/$c"; done
script=$tmp/repo/tools/prereqs.sh

# run NAME EXPECTED-STDERR CMD...: exit 1, nothing on stdout (nothing installed), exactly one line on stderr.
run() {
  local name=$1 want=$2 rc=0
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  check "$name" "$rc|$(cat "$tmp/out")|$(cat "$tmp/err")" "1||$want"
}

mkdir -p "$tmp/root-bin" && cp -P "$bin"/* "$tmp/root-bin/"
ln -s "$(command -v rustup)" "$tmp/root-bin/rustup"
ln -s "$(python3 -c 'import sys; print(sys.executable)')" "$tmp/root-bin/python3"
run "no apt-get: one line, exit 1" \
  "prereqs: missing qemu-system-x86_64, readelf, cpio, x86_64-linux-musl-gcc, cargo-auditable (no apt-get, no cargo, so nothing was installed); install them with: apt-get install qemu-system-x86 binutils cpio musl-tools && cargo install --locked cargo-auditable@0.7.7" \
  env PATH="$tmp/root-bin" "$script" demo

printf '%s\n' 'qemu-system-x86_64  apt:qemu-system-x86      t' \
              'py:kubernetes_validate  pip:kubernetes-validate  t' > "$tmp/table-user"
ln -s "$(command -v apt-get)" "$bin/apt-get"
run "not root: one line, exit 1" \
  "prereqs: missing qemu-system-x86_64, python3 module kubernetes_validate (not root, no pip that can write to python3's site-packages, so nothing was installed); install them with: apt-get install qemu-system-x86 && python3 -m pip install kubernetes-validate" \
  setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH="$bin" HOME=/nonexistent PREREQS_TABLE="$tmp/table-user" "$script" t
rm "$bin/apt-get"

printf '%s\n' 'no-such-tool-a  cargo:no-such-crate@1.2.3  t' 'no-such-tool-b  pip:no-such-package  t' > "$tmp/table-kinds"
run "no cargo, no pip: one line, exit 1" \
  "prereqs: missing no-such-tool-a, no-such-tool-b (no pip that can write to python3's site-packages, no cargo, so nothing was installed); install them with: python3 -m pip install no-such-package && cargo install --locked no-such-crate@1.2.3" \
  env PATH="$bin" PREREQS_TABLE="$tmp/table-kinds" "$script" t

run "no rustup: one line, exit 1" \
  "prereqs: missing rustup, x86_64-linux-musl-gcc, cargo-auditable (no rustup, no apt-get, no cargo, so nothing was installed); install them with: curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain none && . \"\$HOME/.cargo/env\" && (cd $tmp/repo && rustup toolchain install) && apt-get install musl-tools && cargo install --locked cargo-auditable@0.7.7" \
  env PATH="$bin" "$script" musl

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
