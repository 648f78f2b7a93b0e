# The README's commands. `make test` is what CI runs (.ci/run) on a clean clone.
# Each target first runs tools/prereqs.sh for itself (its `prereqs-TARGET` prerequisite): it installs what
# this machine lacks for that target (the Rust toolchain of rust-toolchain.toml, Debian and Python packages)
# and says nothing when all is there.
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl
# The VM, the image and the benchmarks want the release build; tests/setup builds with a cheaper profile.
MUSL_PROFILE ?= release
PREREQS := tools/prereqs.sh
AAVM := tests/vm/aavm.sh

# Prerequisites are made left to right, so the tools are installed before anything uses them.
.NOTPARALLEL:
.PHONY: test test-rust test-setup test-manifests test-vm musl demo bench fmt corpus

## Everything: format, lints, unit + integration tests, the fresh-machine set-up, manifests, then the
## real-kernel VM suite.
test: prereqs-test test-rust test-setup test-manifests test-vm

## What the Makefile's targets need, installed when missing (see tools/prereqs.sh for the table).
prereqs-%:
	@$(PREREQS) $*

test-rust: prereqs-test-rust corpus
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

## Real-world profiles for tests/differential.rs and VM scenario 11 (Debian's apparmor-profiles{,-extra}),
## cached in target/corpus.
corpus: prereqs-corpus
	tests/differential/fetch-corpus.sh

## A clean clone on a machine without the musl target gets through `make demo`'s set-up.
test-setup: prereqs-test-setup
	bash tests/setup/run.sh

test-manifests: prereqs-test-manifests
	bash tests/manifests/run.sh

## The static binary that goes into the VM and the image.
musl: prereqs-musl
	$(CARGO) build --profile $(MUSL_PROFILE) --locked --target $(MUSL_TARGET)

fmt: prereqs-test-rust
	$(CARGO) fmt

## Real-kernel suite: Debian's AppArmor kernel under qemu (TCG), every scenario in tests/vm/guest/scenarios, 2 VMs in parallel.
## Ends with `N passed, M failed`; exits non-zero on any failure or when the VM cannot run.
test-vm: prereqs-test-vm musl corpus
	$(AAVM) setup
	$(AAVM) build
	$(AAVM) run

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
