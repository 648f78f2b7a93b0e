# The README's commands. `make test` is what CI runs (.ci/run) on a clean clone.
# Each target first runs tools/prereqs.sh for itself (its `prereqs-TARGET` prerequisite): it installs what
# this machine lacks for that target (the Rust toolchain of rust-toolchain.toml, Debian and Python packages)
# and says nothing when all is there.
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl
ARM64_TARGET := aarch64-unknown-linux-musl
# The VM, the image and the benchmarks want the release build; tests/setup builds with a cheaper profile.
MUSL_PROFILE ?= release
# The node build (the VM, the image): Cargo.toml's `agent` feature set, without the kubectl plugin.
AGENT_FEATURES := --no-default-features --features agent
PREREQS := tools/prereqs.sh
AAVM := tests/vm/aavm.sh

# Prerequisites are made left to right, so the tools are installed before anything uses them.
.NOTPARALLEL:
.PHONY: test test-rust test-setup test-manifests test-vm test-image image musl musl-arm64 dist-bins demo bench fmt corpus features man dist test-dist

## Everything: format, lints, unit + integration tests, the fresh-machine set-up, manifests, then the
## real-kernel VM suite.
test: prereqs-test test-rust test-setup test-manifests test-image test-vm test-dist

## What the Makefile's targets need, installed when missing (see tools/prereqs.sh for the table).
prereqs-%:
	@$(PREREQS) $*

test-rust: prereqs-test-rust corpus
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

## Real-world profiles for tests/differential.rs and VM scenarios 11 and 21 (Debian's apparmor-profiles{,-extra}),
## cached in target/corpus.
corpus: prereqs-corpus
	tests/differential/fetch-corpus.sh

## A clean clone on a machine without the musl target gets through `make demo`'s set-up.
test-setup: prereqs-test-setup
	bash tests/setup/run.sh

## Manifests, Dockerfile, alert rules and dashboards; the image root filesystem check runs the static agent
## (a debug build links glibc's libgcc_s, which the image does not carry).
test-manifests: prereqs-test-manifests musl
	bash tests/manifests/run.sh

## The static node binary that goes into the VM and the image; `cargo auditable` embeds its dependency list
## (a .dep-v0 section scanners such as trivy and grype read).
musl: prereqs-musl
	$(CARGO) auditable build --profile $(MUSL_PROFILE) --locked --target $(MUSL_TARGET) --bin apparmor-loader $(AGENT_FEATURES)

## The same for arm64, cross-linked with rust-lld (.cargo/config.toml).
musl-arm64: prereqs-musl-arm64
	$(CARGO) auditable build --profile $(MUSL_PROFILE) --locked --target $(ARM64_TARGET) --bin apparmor-loader $(AGENT_FEATURES)

## The release archives' binaries: every default feature, the kubectl plugin included, copied out to
## target/dist-bin/TRIPLE/ at once (the next `make musl` puts the node build back in target/TRIPLE/).
dist-bins: prereqs-musl prereqs-musl-arm64
	for t in $(MUSL_TARGET) $(ARM64_TARGET); do \
	  $(CARGO) auditable build --profile $(MUSL_PROFILE) --locked --target $$t --bin apparmor-loader \
	  && install -D -m 0755 target/$$t/$(MUSL_PROFILE)/apparmor-loader target/dist-bin/$$t/apparmor-loader \
	  || exit 1; \
	done

## Man pages from the clap definitions: target/man/apparmor-loader.1 and apparmor-loader-SUBCOMMAND.1.
man: prereqs-test-rust
	$(CARGO) run --locked --quiet --example man -- target/man

## Release archives: target/dist/apparmor-loader-VERSION-{x86_64,aarch64}.tar.gz (binary, man pages,
## completions) and SHA256SUMS, reproducible from the commit.
dist: prereqs-dist dist-bins man
	tools/dist.sh

## The archives hold what they should, for the right architecture, and rebuild to the same bytes.
test-dist: prereqs-test-dist dist
	bash tests/dist/run.sh

fmt: prereqs-test-rust
	$(CARGO) fmt

## Real-kernel suite under qemu (TCG), every scenario on each kernel of the matrix (Debian 12's 6.1 and
## Debian 13's 6.12, pinned in tools/debian.lock) with the parser the image ships, 2 VMs in parallel; a
## `kernel K: N passed, M failed` line per kernel; then the arm64 smoke scenario on Debian 13's arm64
## kernel (qemu-system-aarch64). Exits non-zero on any failure or when a VM cannot run.
test-vm: prereqs-test-vm musl musl-arm64 corpus
	$(AAVM) setup
	$(AAVM) build
	$(AAVM) run
	$(AAVM) arm64

## The OCI image index (linux/amd64 + linux/arm64) in target/image/oci, daemonless (umoci); SBOM, labels.
image: prereqs-image musl musl-arm64
	tools/image/build.sh

## Checks the image in target/image: platforms, entrypoint, labels, no shell, size; runs the agent and the
## parser from each platform's root filesystem (arm64 under qemu-aarch64-static).
test-image: prereqs-test-image image
	bash tests/image/run.sh

## Re-capture features/ (each kernel's AppArmor feature set, for `check --features`) in the VMs.
features: prereqs-test-vm musl
	$(AAVM) setup
	$(AAVM) build
	$(AAVM) features

## The newcomer's main job: boots the VM, runs `apparmor-loader run` on profiles/, prints /profiles, one denial.
## tests/setup makes demo's prerequisites (the set-up short of the VM's kernel download) in a clean clone.
demo: prereqs-demo musl
	$(AAVM) setup
	$(AAVM) build
	$(AAVM) demo

## Benchmarks in the VM: prints the table, writes target/bench/vm-bench.json.
bench: prereqs-bench musl
	$(AAVM) setup
	$(AAVM) build
	$(AAVM) bench
