# syntax=docker/dockerfile:1
# The aws-node image: one image for the main container (ENTRYPOINT /app/aws-vpc-cni) and the
# init container (command /app/aws-vpc-cni-init), as the chart and deploy/ use it.
# crates/entrypoint/tests/dockerfile.rs checks that every COPY source exists and that every
# binary named here is one the workspace builds.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      --bin aws-k8s-agent \
      --bin aws-cni \
      --bin egress-cni \
      --bin aws-vpc-cni \
      --bin aws-vpc-cni-init \
      --bin grpc-health-probe \
      --bin vpc-cni

FROM debian:bookworm-slim
# iptables and nftables userspace for ipamd's SNAT/connmark rules; iproute2 for operators;
# containernetworking-plugins provides the core plugins the conflist chains (portmap,
# bandwidth, tuning), egress-cni's IPAM (host-local) and loopback: the init container copies
# /init/* to the host's /opt/cni/bin, as upstream's init image does. The package's other
# plugins (dhcp, bridge, ...) are not needed on an EKS node and are dropped (about 35 MB).
# scripts/build-image.sh builds this same stage without a registry: it runs this RUN in a
# Debian bookworm root filesystem made by mmdebstrap (scripts/image-plan.py reads this file).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
         iptables nftables iproute2 ca-certificates containernetworking-plugins \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /init \
    && for p in loopback portmap bandwidth tuning host-local; do mv /usr/lib/cni/$p /init/$p; done \
    && rm -rf /usr/lib/cni
WORKDIR /app
COPY --from=build /src/target/release/aws-vpc-cni /app/aws-vpc-cni
COPY --from=build /src/target/release/aws-vpc-cni-init /app/aws-vpc-cni-init
COPY --from=build /src/target/release/aws-k8s-agent /app/aws-k8s-agent
COPY --from=build /src/target/release/aws-cni /app/aws-cni
COPY --from=build /src/target/release/egress-cni /app/egress-cni
COPY --from=build /src/target/release/grpc-health-probe /app/grpc-health-probe
COPY --from=build /src/target/release/vpc-cni /app/vpc-cni
COPY crates/limits/data/eni-max-pods.txt /app/eni-max-pods.txt
ENTRYPOINT ["/app/aws-vpc-cni"]
