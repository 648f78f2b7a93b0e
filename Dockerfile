# apparmor-loader container image, linux/amd64 and linux/arm64.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t apparmor-loader:0.1.0 .
#   make image        the same image without a container engine (tools/image/build.sh: umoci), into
#                     target/image/oci; tests/image/run.sh checks it
#
# Both paths assemble the root filesystem with the same script, tools/image/rootfs.sh, from the same pinned
# Debian packages (tools/debian.lock, fetched by tools/debfetch.sh), so they cannot drift:
#   build   -- the static agent (musl) for the target platform, cross-compiled on the build platform and
#              linked with rust-lld; `cargo auditable` embeds its dependency list.
#   rootfs  -- Debian 13's AppArmor 4.1 parser and the glibc it needs (>= 2.38), parser.conf, abi/,
#              abstractions/, tunables/, the feature file, the agent: tools/image/rootfs.sh.
#   final   -- FROM scratch + /rootfs. No shell, no package manager: the agent execs apparmor_parser by
#              argv and nothing else.
#
# Size: ~5.4 MB of parser + libraries + policy files plus the agent (~4 MB), under the 12 MB per platform
# that tests/image/run.sh enforces.
#
# The base image is pinned by digest (the multi-platform index of rust:1.95.0-slim-bookworm, the
# toolchain of rust-toolchain.toml); bump tag and digest together.

# --- build -------------------------------------------------------------------
FROM --platform=$BUILDPLATFORM rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS build
ARG TARGETARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# C compilers for ring (TLS of the kube-rs client): musl-gcc for amd64, Debian's cross gcc for arm64
# (.cargo/config.toml names it).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install --locked cargo-auditable@0.7.7
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out of the cached
# target dir inside the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-musl ;; \
      arm64) triple=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac \
    && rustup target add "$triple" \
    && cargo auditable build --release --locked --target "$triple" --bin apparmor-loader \
         --no-default-features --features agent \
    && install -D -m 0755 "target/$triple/release/apparmor-loader" /out/apparmor-loader

# --- rootfs ------------------------------------------------------------------
# Runs on the build platform: it only unpacks the target platform's packages (dpkg-deb -x), runs nothing of
# them. apt-get here uses tools/debfetch.sh's private configuration (trixie, the target architecture).
FROM --platform=$BUILDPLATFORM rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS rootfs
ARG TARGETARCH
WORKDIR /src
COPY tools/ /src/tools/
COPY --from=build /out/apparmor-loader /out/apparmor-loader
RUN DEBFETCH_DIR=/tmp/debfetch DEBFETCH_CACHE=/tmp/debs tools/debfetch.sh extract "rootfs-$TARGETARCH" /tmp/x \
    && tools/image/rootfs.sh "$TARGETARCH" /tmp/x /rootfs /out/apparmor-loader

# --- final -------------------------------------------------------------------
# Runs as root, on purpose: loading policy needs CAP_MAC_ADMIN *and* uid 0 in the initial user namespace
# (the kernel's aa_policy_admin_capable() checks both), and the files under /sys/kernel/security/apparmor are
# root's. The DaemonSet keeps root small: every capability dropped except MAC_ADMIN, read-only root
# filesystem, no privilege escalation.
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
COPY --from=rootfs /rootfs/ /
ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin
LABEL org.opencontainers.image.title="apparmor-loader" \
      org.opencontainers.image.description="Node agent that makes the kernel's AppArmor profiles converge to a directory of profile files" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/apparmor-loader/apparmor-loader" \
      org.opencontainers.image.base.name="scratch"
ENTRYPOINT ["apparmor-loader"]
CMD ["run"]
