#!/bin/bash
# build.sh — `make image`: the multi-platform OCI image (linux/amd64 + linux/arm64) in target/image/oci,
# without a container engine (umoci writes the layers and configs, this script the image index).
#
# Each platform's root filesystem comes from tools/image/rootfs.sh, the step the Dockerfile runs too, fed
# with the pinned Debian 13 packages (tools/debfetch.sh, group rootfs-ARCH) and the static agent
# (`make musl musl-arm64`, built with `cargo auditable` so the binary carries its dependency list). The
# CycloneDX SBOM of the agent (`cargo cyclonedx`) goes into the image (/usr/share/doc/apparmor-loader/
# sbom.cdx.json) and next to it (target/image/sbom.cdx.json).
#
# Result: target/image/oci, an OCI layout whose index.json points at one image index (tag = the crate
# version) listing both platforms; `skopeo copy --all oci:target/image/oci:VERSION docker://…` pushes it.
#
# Env: IMAGE_DIR (default target/image), IMAGE_SOURCE (the org.opencontainers.image.source label),
#      SOURCE_DATE_EPOCH (the created time; default: the last commit's time, for a reproducible config).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${IMAGE_DIR:-$REPO/target/image}
SOURCE=${IMAGE_SOURCE:-https://github.com/apparmor-loader/apparmor-loader}
PLATFORMS=(amd64 arm64)
declare -A TRIPLE=([amd64]=x86_64-unknown-linux-musl [arm64]=aarch64-unknown-linux-musl)

die() { echo "image: $*" >&2; exit 1; }

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
REVISION=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then REVISION=$REVISION-dirty; fi
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)

rm -rf "$OUT" && mkdir -p "$OUT/work"
(cd "$REPO" && cargo cyclonedx --format json --spec-version 1.5 --override-filename sbom.cdx >/dev/null) ||
  die "cargo cyclonedx failed"
mv "$REPO/sbom.cdx.json" "$OUT/sbom.cdx.json"

umoci init --layout "$OUT/oci"
for arch in "${PLATFORMS[@]}"; do
  agent=$REPO/target/${TRIPLE[$arch]}/release/apparmor-loader
  [ -x "$agent" ] || die "$agent missing: run 'make musl musl-arm64' first"
  debs=$OUT/work/debs-$arch bundle=$OUT/work/bundle-$arch
  "$REPO/tools/debfetch.sh" extract "rootfs-$arch" "$debs"
  umoci new --image "$OUT/oci:$arch"
  umoci unpack --image "$OUT/oci:$arch" "$bundle" >/dev/null
  "$REPO/tools/image/rootfs.sh" "$arch" "$debs" "$bundle/rootfs" "$agent"
  install -D -m 0644 "$OUT/sbom.cdx.json" "$bundle/rootfs/usr/share/doc/apparmor-loader/sbom.cdx.json"
  # Every file dated to the commit, so the layer digests depend on the content only.
  find "$bundle/rootfs" -exec touch -h -d "@$EPOCH" {} +
  umoci repack --image "$OUT/oci:$arch" --history.created "$CREATED" --history.created_by "tools/image/rootfs.sh $arch" "$bundle"
  umoci config --image "$OUT/oci:$arch" --no-history --os linux --architecture "$arch" --created "$CREATED" \
    --config.entrypoint apparmor-loader --config.cmd run \
    --config.env PATH=/usr/local/bin:/usr/sbin:/usr/bin \
    --config.label org.opencontainers.image.title=apparmor-loader \
    --config.label "org.opencontainers.image.description=Node agent that makes the kernel's AppArmor profiles converge to a directory of profile files" \
    --config.label org.opencontainers.image.licenses=Apache-2.0 \
    --config.label "org.opencontainers.image.version=$VERSION" \
    --config.label "org.opencontainers.image.revision=$REVISION" \
    --config.label "org.opencontainers.image.source=$SOURCE" \
    --config.label "org.opencontainers.image.created=$CREATED" \
    --config.label "dev.apparmor-loader.parser=apparmor $("$REPO/tools/debfetch.sh" version "rootfs-$arch" apparmor) (Debian 13)"
done

# One image index for both platforms, the layout's only entry (tag = version), as `docker buildx` exports.
python3 - "$OUT/oci" "$VERSION" "${PLATFORMS[@]}" <<'PY'
import hashlib, json, os, sys
layout, version, archs = sys.argv[1], sys.argv[2], sys.argv[3:]
top = json.load(open(os.path.join(layout, "index.json")))
by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in top["manifests"]}
entries = []
for arch in archs:
    m = dict(by_tag[arch])
    m.pop("annotations", None)
    m["platform"] = {"architecture": arch, "os": "linux"}
    entries.append(m)
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
raw = json.dumps(index, indent=2, sort_keys=True).encode()
digest = hashlib.sha256(raw).hexdigest()
open(os.path.join(layout, "blobs", "sha256", digest), "wb").write(raw)
top["manifests"] = [{
    "mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + digest, "size": len(raw),
    "annotations": {"org.opencontainers.image.ref.name": version},
}]
json.dump(top, open(os.path.join(layout, "index.json"), "w"))
print("sha256:" + digest)
PY
umoci gc --layout "$OUT/oci"
rm -rf "$OUT/work"
echo "image: $OUT/oci:$VERSION (linux/amd64, linux/arm64; revision $REVISION)"
