#!/usr/bin/env bash
# Installs the peers make bench measures dnsplan against (Debian): etcd
# (etcd-server, beside the v3.7.3 make tools builds), the authoritative DNS
# servers Knot, NSD and BIND9, dnsperf to load them, and util-linux's
# taskset to pin each to its core. The packages' services are not started:
# the benchmark starts every server itself, on its own ports, and stops it.
set -euo pipefail
pkgs=(etcd-server knot nsd bind9 dnsperf util-linux)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
((${#missing[@]})) || exit 0
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
# A policy-rc.d that answers 101 keeps the packages' scripts from starting
# their daemons (etcd on 2379, the DNS servers on 53) while they install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  trap '$sudo rm -f "$policy"' EXIT
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
fi
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
