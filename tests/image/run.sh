#!/bin/bash
# tests/image/run.sh — checks the image `make image` wrote to target/image/oci (an OCI layout):
# one image index with linux/amd64 and linux/arm64; per platform: entrypoint and cmd, the OCI labels
# (version = Cargo.toml's, revision = the commit, source), no shell anywhere in the root filesystem, at most
# 12 MB uncompressed, the agent with its embedded dependency list (cargo auditable) and the SBOM; then it runs
# `apparmor-loader --version` and `apparmor_parser -V` from each platform's root filesystem (amd64 in a
# chroot, arm64 under qemu-aarch64-static). Prints one line per check; exits 1 on any failure.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAYOUT=${IMAGE_DIR:-$REPO/target/image}/oci
BUDGET=$((12 * 1000 * 1000))
fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
# t DESC CMD..: a check that passes when CMD succeeds.
t() { local d=$1; shift; if out=$("$@" 2>&1); then ok "$d"; else bad "$d: $(head -c 400 <<<"$out")"; fi; }

[ -f "$LAYOUT/index.json" ] || { echo "FAIL  no OCI layout at $LAYOUT (run make image)"; exit 1; }
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
REVISION=$(git -C "$REPO" rev-parse HEAD)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The layout as data: per platform, the config and the single layer unpacked (python: no engine, no umoci
# state), so what is checked is exactly what a registry would serve.
python3 - "$LAYOUT" "$VERSION" "$WORK" <<'PY' || { echo "FAIL  the layout is not one index of linux/amd64 + linux/arm64"; exit 1; }
import gzip, io, json, os, sys, tarfile
layout, version, work = sys.argv[1:]
blob = lambda d: open(os.path.join(layout, "blobs", *d.split(":")), "rb").read()
top = json.load(open(os.path.join(layout, "index.json")))
refs = [m for m in top["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == version]
assert len(refs) == 1 and refs[0]["mediaType"] == "application/vnd.oci.image.index.v1+json", top
index = json.loads(blob(refs[0]["digest"]))
plats = sorted((m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"])
assert plats == [("linux", "amd64"), ("linux", "arm64")], plats
for m in index["manifests"]:
    arch = m["platform"]["architecture"]
    manifest = json.loads(blob(m["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["architecture"] == arch and config["os"] == "linux", config
    json.dump(config, open(os.path.join(work, arch + ".config.json"), "w"))
    size = 0
    root = os.path.join(work, arch)
    os.makedirs(root)
    for layer in manifest["layers"]:
        raw = blob(layer["digest"])
        if layer["mediaType"].endswith("gzip"):
            raw = gzip.decompress(raw)
        size += len(raw)
        tarfile.open(fileobj=io.BytesIO(raw)).extractall(root, filter="tar")
    open(os.path.join(work, arch + ".size"), "w").write(str(size))
PY
ok "one image index (tag $VERSION) with linux/amd64 and linux/arm64"
# What a registry client sees (skopeo copy --all pushes this): each platform resolves from the index.
for arch in amd64 arm64; do
  t "skopeo resolves linux/$arch from the index" sh -c "skopeo inspect --override-os linux --override-arch $arch 'oci:$LAYOUT:$VERSION' | grep -q '\"Architecture\": \"$arch\"'"
done

cfg() { python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["config"]; print(json.dumps(eval(sys.argv[2])))' "$WORK/$1.config.json" "$2"; }
for arch in amd64 arm64; do
  R=$WORK/$arch
  t "$arch: entrypoint apparmor-loader, cmd run" test "$(cfg $arch 'c.get("Entrypoint")')$(cfg $arch 'c.get("Cmd")')" = '["apparmor-loader"]["run"]'
  t "$arch: label version = $VERSION" test "$(cfg $arch 'c["Labels"]["org.opencontainers.image.version"]')" = "\"$VERSION\""
  t "$arch: label revision = this commit" grep -q "\"$REVISION" <<<"$(cfg $arch 'c["Labels"]["org.opencontainers.image.revision"]')"
  t "$arch: label source is a URL" grep -q '^"https://' <<<"$(cfg $arch 'c["Labels"]["org.opencontainers.image.source"]')"
  # Executables (or links) by a shell's name; abstractions/bash is a policy file and does not count.
  shells=$(find "$R" \( -type f -perm /111 -o -type l \) \
    \( -name sh -o -name bash -o -name dash -o -name ash -o -name busybox -o -name toybox \) -print)
  t "$arch: no shell in the image ($(find "$R" -type f -perm /111 | sed "s|^$R||" | tr '\n' ' '))" test -z "$shells"
  size=$(cat "$WORK/$arch.size")
  t "$arch: $((size / 1000)) kB uncompressed <= 12 MB" test "$size" -le "$BUDGET"
  t "$arch: the agent embeds its dependency list (cargo auditable)" sh -c "LC_ALL=C readelf -S '$R/usr/local/bin/apparmor-loader' | grep -q '\.dep-v0'"
  t "$arch: CycloneDX SBOM of the agent" python3 -c '
import json, sys; b = json.load(open(sys.argv[1]))
assert b["bomFormat"] == "CycloneDX" and b["metadata"]["component"]["name"] == "apparmor-loader"
assert any(c["name"] == "tokio" for c in b["components"])' "$R/usr/share/doc/apparmor-loader/sbom.cdx.json"
  if [ $arch = amd64 ]; then
    run=(chroot "$R")
  else
    # -L: the arm64 dynamic loader and glibc are looked up in the image's root filesystem.
    run=(qemu-aarch64-static -L "$R")
  fi
  v=$("${run[@]}" "$([ $arch = amd64 ] || echo "$R")/usr/local/bin/apparmor-loader" --version 2>&1)
  t "$arch: apparmor-loader --version runs ($v)" grep -q "apparmor-loader $VERSION" <<<"$v"
  # The node build (Cargo feature `agent`): called by the kubectl plugin's name it says it has no plugin.
  # The binary is static, so it runs from outside the root filesystem under its plugin name.
  ln -sf "$R/usr/local/bin/apparmor-loader" "$WORK/kubectl-apparmor_loader"
  emu=(); [ $arch = amd64 ] || emu=(qemu-aarch64-static)
  k=$("${emu[@]}" "$WORK/kubectl-apparmor_loader" --help 2>&1 || true)
  t "$arch: the node build, without the kubectl plugin" grep -q "built without the kubectl plugin" <<<"$k"
  p=$("${run[@]}" "$([ $arch = amd64 ] || echo "$R")/usr/sbin/apparmor_parser" -V 2>&1 | head -1)
  t "$arch: apparmor_parser -V runs ($p)" grep -q "AppArmor parser version 4\." <<<"$p"
done
[ $fails = 0 ] && echo "image: all checks passed" || echo "image: $fails checks failed"
[ $fails = 0 ]
