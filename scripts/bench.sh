#!/usr/bin/env bash
# Benchmarks. Usage: scripts/bench.sh [store|api|scheduler|controllers] [--quick]
# Prints a table; keep the latest one, the command and the machine in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

what=${1:-store}
[ $# -gt 0 ] && shift
case "$what" in
  store) cargo bench --quiet --bench store -- "$@" ;;
  api) cargo bench --quiet --bench api -- "$@" ;;
  scheduler) cargo bench --quiet --bench scheduler -- "$@" ;;
  controllers) cargo bench --quiet --bench controllers -- "$@" ;;
  *) echo "bench: unknown benchmark '$what' (known: store, api, scheduler, controllers)" >&2; exit 2 ;;
esac
