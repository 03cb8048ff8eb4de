#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (Kubo built from the Go module proxy, Node 24 and Helia from npm), then
# runs formatting and lint checks, unit tests, integration tests and the
# interop tests against real Kubo and Helia. Every step is idempotent;
# expensive builds are cached outside the repository (see compat-tests/scripts).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing interop dependencies (Kubo, Node 24, Helia, Knot DNS, Chromium)"
bash compat-tests/scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building the sidecar binary"
cargo build --locked -p sidecar --bin sidecar
export SIDECAR_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/sidecar"

step "cargo test (unit, integration, interop with real Kubo and Helia)"
cargo test --workspace --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-2}"
