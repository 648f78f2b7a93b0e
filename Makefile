# The README's commands. `make test` is what CI runs (.ci/run) on a clean clone.
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl
MUSL_BIN := target/$(MUSL_TARGET)/release/apparmor-loader

.PHONY: test test-rust test-manifests test-vm musl demo bench fmt lint

## Everything: format, lints, unit + integration tests, manifests, then the real-kernel VM suite.
test: test-rust test-manifests test-vm

test-rust:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

test-manifests:
	bash tests/manifests/run.sh

## The static binary that goes into the VM and the image.
musl:
	$(CARGO) build --release --locked --target $(MUSL_TARGET)

fmt:
	$(CARGO) fmt
