#!/usr/bin/env bash
# Installs the Debian packages the test tiers, labs and benchmarks use, but only
# the ones that are missing, so a second run does nothing. Needs root; without
# it, says which packages are missing and leaves the tiers to report SKIPPED.
set -euo pipefail

packages=(
  iproute2 nftables conntrack tcpdump iputils-ping   # integration tier: namespaces, nft, captures
  dnsutils dnsperf unbound                            # DNS tests and benchmark
  iperf3 wrk                                          # data-path benchmarks
  openssl golang-cfssl                                # PKI tests (openssl verify/s_client, cfssl serve)
  systemd                                             # systemd-analyze verify of the shipped unit
  qemu-system-x86 ipvsadm busybox-static cpio kmod xz-utils  # VM lab with real IPVS
)

missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "setup: not root; missing Debian packages: ${missing[*]} (the tiers that need them will say SKIPPED)"
  exit 0
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
