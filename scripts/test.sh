#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks format and lints, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

echo "test: cargo fmt --check" >&2
cargo fmt --check
echo "test: cargo clippy" >&2
cargo clippy --all-targets --quiet -- -D warnings
echo "test: running the tests" >&2
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
