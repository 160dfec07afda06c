#!/usr/bin/env bash
# Installs the tools the tests need on a fresh Debian machine. Idempotent: every step is
# skipped when its tool is already there at the wanted version.
set -euo pipefail

MOTO_VERSION=5.2.1   # the limits table is generated from this moto release's instance data

apt_missing=()
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3 python3-pip)
command -v ip >/dev/null 2>&1 || apt_missing+=(iproute2)
command -v iptables-restore >/dev/null 2>&1 || apt_missing+=(iptables)
command -v nft >/dev/null 2>&1 || apt_missing+=(nftables)   # the nftables connmark backend
command -v promtool >/dev/null 2>&1 || apt_missing+=(prometheus)
# The CNI runtime peer (tests/tests/cni_podman_runtime.rs) and Debian's reference plugins.
command -v podman >/dev/null 2>&1 || apt_missing+=(podman)
command -v runc >/dev/null 2>&1 || apt_missing+=(runc)
[ -x /bin/busybox ] || apt_missing+=(busybox-static)
[ -x /usr/lib/cni/portmap ] || apt_missing+=(containernetworking-plugins)
# portmap/bandwidth/tuning/host-local: the plugins 10-aws.conflist chains (entrypoint tests)
[ -x /usr/lib/cni/portmap ] || apt_missing+=(containernetworking-plugins)
# host-local: egress-cni's IPAM delegate (crates/egress-cni/tests/egress_v6_kernel.rs)
[ -x /usr/lib/cni/host-local ] || apt_missing+=(containernetworking-plugins)
# The aws-node image without a registry (scripts/build-image.sh): a Debian root filesystem.
command -v mmdebstrap >/dev/null 2>&1 || apt_missing+=(mmdebstrap)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${apt_missing[@]}"
fi

if ! python3 -c "import moto,flask,sys; sys.exit(0 if moto.__version__ == '${MOTO_VERSION}' else 1)" 2>/dev/null \
   || ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip install --quiet "moto[server]==${MOTO_VERSION}" \
    || python3 -m pip install --quiet --break-system-packages "moto[server]==${MOTO_VERSION}"
  hash -r
fi
command -v moto_server >/dev/null 2>&1 || { echo "moto_server is not on PATH after installing moto[server]" >&2; exit 1; }

# Python's grpcio: a gRPC client that sends its own :authority over Unix sockets
# (crates/rpc/tests/unix_roundtrip.rs).
GRPCIO_VERSION=1.85.3
if ! python3 -c "import grpc,sys; sys.exit(0 if grpc.__version__ == '${GRPCIO_VERSION}' else 1)" 2>/dev/null; then
  python3 -m pip install --quiet "grpcio==${GRPCIO_VERSION}" \
    || python3 -m pip install --quiet --break-system-packages "grpcio==${GRPCIO_VERSION}"
fi

for comp in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${comp}"; then
    rustup component add "$comp"
  fi
done
