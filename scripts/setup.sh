#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test Berth. Idempotent; cheap when
# everything is already there. Needs root (or passwordless sudo) only when something is missing.
#
#   libclang-dev        RocksDB's Rust bindings run bindgen, which needs libclang and its headers
#   mosquitto-clients   mosquitto_pub/mosquitto_sub: real third-party clients for interop tests
#   haproxy             the load balancer in front of the three nodes of the chaos test
#                       (crates/berth/tests/chaos.rs), as a deployment would have
#   openssl             makes the test CA and certificates of the TLS tests (crates/berth/tests/tls.rs)
#   prometheus          promtool checks a scrape, the alert rules and the dashboard's queries, and
#                       the server scrapes three nodes (crates/berth/tests/metrics.rs)
#   paho-mqtt (PyPI)    the Eclipse Paho Python client: a real third-party peer for MQTT over
#                       WebSocket (crates/berth/tests/websocket.rs)
#   cargo-nextest       the test runner (bounded per-test timeouts, parallel processes)
set -euo pipefail

apt_packages=(libclang-dev mosquitto-clients haproxy openssl prometheus)

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo -n); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c "import paho.mqtt" >/dev/null 2>&1; then
  echo "setup: installing paho-mqtt"
  python3 -m pip install --quiet --disable-pip-version-check "paho-mqtt==2.1.0"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
