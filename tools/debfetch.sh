#!/bin/bash
# debfetch.sh — Debian packages at the exact versions of tools/debian.lock, cached under target/debs.
#
#   tools/debfetch.sh fetch GROUP..        download what the groups' lines name (skips what the cache holds),
#                                          checks every .deb's SHA-256 against the lock
#   tools/debfetch.sh extract GROUP DIR    fetch, then dpkg -x every package of GROUP into DIR
#   tools/debfetch.sh path GROUP PACKAGE   fetch, then print the cached .deb's path
#   tools/debfetch.sh version GROUP PACKAGE   the pinned version
#   tools/debfetch.sh lock                 re-resolve every line to the suite's current candidate and rewrite
#                                          the lock (the deliberate pin bump; review the diff)
#
# apt runs with a private configuration per suite (its own sources list, package lists, cache and an empty
# dpkg status under target/debfetch/SUITE): the machine's sources, lists and installed packages are neither
# read nor touched, so a Debian 12 host fetches Debian 13 (trixie) packages, for amd64 and arm64 alike.
#
# Env: DEBFETCH_LOCK (default tools/debian.lock), DEBFETCH_DIR (default target/debfetch), DEBFETCH_CACHE
#      (default target/debs), DEBFETCH_MIRROR (default http://deb.debian.org).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCK=${DEBFETCH_LOCK:-$REPO/tools/debian.lock}
STATE=${DEBFETCH_DIR:-$REPO/target/debfetch}
CACHE=${DEBFETCH_CACHE:-$REPO/target/debs}
MIRROR=${DEBFETCH_MIRROR:-http://deb.debian.org}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() { echo "debfetch: $*" >&2; exit 1; }

# lock_lines [GROUP]: "group suite arch package version sha256 [via=META]" lines, comments stripped.
lock_lines() {
  [ -f "$LOCK" ] || die "$LOCK not found"
  sed 's/#.*//' "$LOCK" | awk -v g="${1:-}" 'NF >= 6 && (g == "" || $1 == g)'
}

# apt_conf SUITE: writes (once) and prints the private apt.conf for SUITE (bookworm, trixie).
apt_conf() {
  local suite=$1 d=$STATE/$1
  if [ ! -s "$d/apt.conf" ]; then
    [ -r "$KEYRING" ] || die "$KEYRING missing (apt-get install debian-archive-keyring)"
    mkdir -p "$d/empty" "$d/lists/partial" "$d/cache/archives/partial"
    : > "$d/status"
    printf 'deb [signed-by=%s] %s/debian %s main\ndeb [signed-by=%s] %s/debian-security %s-security main\n' \
      "$KEYRING" "$MIRROR" "$suite" "$KEYRING" "$MIRROR" "$suite" > "$d/sources.list"
    cat > "$d/apt.conf.tmp" <<EOF
Dir::Etc::sourcelist "$d/sources.list";
Dir::Etc::sourceparts "$d/empty";
Dir::Etc::preferences "$d/empty/none";
Dir::Etc::preferencesparts "$d/empty";
Dir::State::lists "$d/lists";
Dir::State::status "$d/status";
Dir::Cache "$d/cache";
APT::Architecture "amd64";
APT::Architectures { "amd64"; "arm64"; };
Acquire::Languages "none";
APT::Sandbox::User "root";
EOF
    mv "$d/apt.conf.tmp" "$d/apt.conf"
  fi
  echo "$d/apt.conf"
}

apt_in() { local suite=$1; shift; APT_CONFIG=$(apt_conf "$suite") "$@"; }

refresh() {
  echo "debfetch: apt-get update ($1, private lists)" >&2
  apt_conf "$1" >/dev/null
  apt_in "$1" apt-get -q update >/dev/null 2>"$STATE/$1/update.err" || { cat "$STATE/$1/update.err" >&2; die "apt-get update for $1 failed"; }
}

# deb_path ARCH PACKAGE VERSION: where the cache keeps it (apt-get download's name: epoch ':' as %3a).
deb_path() { echo "$CACHE/${2}_${3//:/%3a}_$1.deb"; }

# fetch_one SUITE ARCH PACKAGE VERSION SHA256
fetch_one() {
  local suite=$1 arch=$2 pkg=$3 ver=$4 sum=$5 f
  f=$(deb_path "$arch" "$pkg" "$ver")
  if [ -s "$f" ] && echo "$sum  $f" | sha256sum -c --status; then return 0; fi
  mkdir -p "$CACHE"
  apt_conf "$suite" >/dev/null
  local try
  for try in 1 2; do
    # The lists are refreshed only when a download fails: missing lists, or a new point release.
    [ "$try" = 1 ] && [ -d "$STATE/$suite/lists" ] && ls "$STATE/$suite/lists/"*_Packages* >/dev/null 2>&1 || refresh "$suite"
    if (cd "$CACHE" && apt_in "$suite" apt-get -q download "$pkg:$arch=$ver" >/dev/null 2>"$STATE/$suite/download.err"); then break; fi
    [ "$try" = 2 ] && { cat "$STATE/$suite/download.err" >&2
      die "$pkg:$arch=$ver is not in $suite any more (the archive keeps only current versions): bump the pin with 'tools/debfetch.sh lock' and review the diff"; }
  done
  echo "$sum  $f" | sha256sum -c --status || { rm -f "$f"; die "$f: SHA-256 differs from $LOCK"; }
}

cmd_fetch() {
  local g suite arch pkg ver sum rest n
  for g in "$@"; do
    n=0
    while read -r _ suite arch pkg ver sum rest; do
      fetch_one "$suite" "$arch" "$pkg" "$ver" "$sum"; n=$((n + 1))
    done < <(lock_lines "$g")
    [ "$n" -gt 0 ] || die "no group '$g' in $LOCK"
  done
}

cmd_extract() {
  local g=$1 dir=$2 suite arch pkg ver rest
  cmd_fetch "$g"
  mkdir -p "$dir"
  while read -r _ suite arch pkg ver rest; do
    dpkg-deb -x "$(deb_path "$arch" "$pkg" "$ver")" "$dir"
  done < <(lock_lines "$g")
}

# field GROUP PACKAGE: the lock line's words for that package.
line_of() {
  local l
  l=$(lock_lines "$1" | awk -v p="$2" '$4 == p || $7 == "via=" p' | head -1)
  [ -n "$l" ] || die "no package $2 in group $1 of $LOCK"
  echo "$l"
}

cmd_path() {
  local _g suite arch pkg ver sum
  read -r _g suite arch pkg ver sum _ <<<"$(line_of "$1" "$2")"
  fetch_one "$suite" "$arch" "$pkg" "$ver" "$sum"
  deb_path "$arch" "$pkg" "$ver"
}

# lock: the current candidate of every line; `via=META` lines follow META's dependency (the kernel ABI
# package behind linux-image-amd64 changes name with every ABI bump).
cmd_lock() {
  local suites s tmp
  suites=$(lock_lines | awk '{print $2}' | sort -u)
  for s in $suites; do refresh "$s"; done
  tmp=$(mktemp)
  while IFS= read -r line; do
    read -r g suite arch pkg ver sum via <<<"$(sed 's/#.*//' <<<"$line")"
    if [ -z "${sum:-}" ]; then echo "$line" >> "$tmp"; continue; fi
    if [ -n "${via:-}" ]; then
      pkg=$(apt_in "$suite" apt-cache depends "${via#via=}:$arch" | awk '/Depends: linux-image-/{print $2; exit}')
      pkg=${pkg%:"$arch"}
      [ -n "$pkg" ] || die "cannot resolve ${via#via=}:$arch in $suite"
    fi
    local show
    show=$(apt_in "$suite" apt-cache show "$pkg:$arch" | awk '/^$/{exit} {print}')
    ver=$(awk '/^Version:/{print $2}' <<<"$show")
    sum=$(awk '/^SHA256:/{print $2}' <<<"$show")
    [ -n "$ver" ] && [ -n "$sum" ] || die "no $pkg:$arch in $suite"
    printf '%-14s %-9s %-6s %-34s %-22s %s%s\n' "$g" "$suite" "$arch" "$pkg" "$ver" "$sum" "${via:+ $via}" >> "$tmp"
  done < "$LOCK"
  mv "$tmp" "$LOCK"
  echo "debfetch: $LOCK rewritten; review with git diff"
}

command -v apt-get >/dev/null || die "apt-get not found: Debian packages are fetched with apt"
case ${1:-} in
  fetch) shift; [ $# -gt 0 ] || die "usage: $0 fetch GROUP.."; cmd_fetch "$@" ;;
  extract) [ $# = 3 ] || die "usage: $0 extract GROUP DIR"; cmd_extract "$2" "$3" ;;
  path) [ $# = 3 ] || die "usage: $0 path GROUP PACKAGE"; cmd_path "$2" "$3" ;;
  version) [ $# = 3 ] || die "usage: $0 version GROUP PACKAGE"; line_of "$2" "$3" | awk '{print $5}' ;;
  lock) cmd_lock ;;
  *) die "usage: $0 fetch GROUP.. | extract GROUP DIR | path GROUP PACKAGE | version GROUP PACKAGE | lock" ;;
esac
