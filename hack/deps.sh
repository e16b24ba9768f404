#!/usr/bin/env bash
# Installs what building and testing Petrel needs on Debian 12, idempotently:
# Debian packages (only the missing ones) and the Go modules.
set -euo pipefail
PACKAGES=(etcd-server python3-kubernetes dnsutils dnsperf iproute2 curl ca-certificates
  clang llvm libbpf-dev linux-libc-dev bpftool iptables util-linux
  containerd runc crun busybox-static iperf3 docker-registry apache2-utils chromium)
# Peers of benchmarks only (petrelctl bench ingress, bench policy): `hack/deps.sh --bench`.
# Kept out of make test: Debian's nginx package starts a server on :80.
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(wrk nginx-light ipset)
fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null; then
  echo "deps: Go is not on PATH (expected /usr/local/go/bin)" >&2; exit 1
fi
if [ ! -x /usr/bin/kubectl ]; then
  echo "deps: warning: /usr/bin/kubectl is missing; the kubectl end-to-end tests will skip" >&2
fi
go mod download
