# The README's commands. `make test` is what CI runs (.ci/run) on a clean clone.
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl
MUSL_BIN := target/$(MUSL_TARGET)/release/apparmor-loader

.PHONY: test test-rust test-manifests test-vm musl demo bench fmt lint corpus

## Everything: format, lints, unit + integration tests, manifests, then the real-kernel VM suite.
test: test-rust test-manifests test-vm

test-rust: corpus
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

## Real-world profiles for tests/differential.rs (Debian's apparmor-profiles{,-extra}), cached in target/corpus.
corpus:
	tests/differential/fetch-corpus.sh

test-manifests:
	bash tests/manifests/run.sh

## The static binary that goes into the VM and the image.
musl:
	$(CARGO) build --release --locked --target $(MUSL_TARGET)

fmt:
	$(CARGO) fmt

AAVM := tests/vm/aavm.sh

## Real-kernel suite: Debian's AppArmor kernel under qemu (TCG), 10 scenarios, 2 VMs in parallel.
## Ends with `N passed, M failed`; exits non-zero on any failure or when the VM cannot run.
test-vm: musl corpus
	$(AAVM) setup
	$(AAVM) build
	$(AAVM) run

## The newcomer's main job: boots the VM, runs `apparmor-loader run` on profiles/, prints /profiles, one denial.
demo: musl
	$(AAVM) setup
	$(AAVM) build
	$(AAVM) demo

## Benchmarks in the VM: prints the table, writes target/bench/vm-bench.json.
bench: musl
	$(AAVM) setup
	$(AAVM) build
	$(AAVM) bench
