#!/usr/bin/env bash
# Installs what braid, its tests and its lab need on a Debian machine (run as root),
# then creates the virtualenv .venv with braid installed editable. Idempotent and quick
# when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in iperf3:iperf3 nft:nftables ethtool:ethtool ip:iproute2 mptcpize:mptcpd \
            curl:curl ps:procps ping:iputils-ping chromium:chromium \
            chromedriver:chromium-driver wg:wireguard-tools; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${need[*]}; run as root or: apt-get install -y ${need[*]}" >&2
    exit 2
  fi
  echo "setup: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[dev]'
