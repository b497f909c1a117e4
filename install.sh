#!/usr/bin/env bash
# Builds skiff from this checkout and installs it as /usr/local/bin/skiff.
# (The `curl | sh` installer with a service unit comes with the install/operate work.)
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v cargo >/dev/null 2>&1; then
  echo "install: cargo is missing; install Rust first (https://rustup.rs)" >&2
  exit 1
fi
scripts/deps.sh
echo "install: building skiff (release)" >&2
cargo build --release --locked
prefix=${PREFIX:-/usr/local}
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo install -D -m 0755 target/release/skiff "$prefix/bin/skiff"
echo "install: installed $prefix/bin/skiff ($("$prefix/bin/skiff" --version))" >&2
