#!/usr/bin/env bash
# Installs what building and testing skiff needs on Debian, when it is missing.
# Quick when everything is present: it only checks for the commands.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# CronJob time zones are read from the system's zoneinfo.
[ -f /usr/share/zoneinfo/Europe/Berlin ] || need+=(tzdata)

# The Python client, in a virtual environment of the project's own (target/py), so the
# machine's Python packages are left alone.
if ! target/py/bin/python3 -c "import kubernetes" >/dev/null 2>&1; then
  echo "deps: installing the Python kubernetes client into target/py" >&2
  python3 -m venv target/py
  target/py/bin/pip install --quiet --disable-pip-version-check kubernetes >/dev/null
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${need[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts etcd as a service on install where it can; the tests run their own.
