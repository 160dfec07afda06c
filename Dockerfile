# syntax=docker/dockerfile:1
# Multi-stage build of the node image. Only the binaries that exist today are copied; the
# entrypoint (aws-vpc-cni), its init mode, egress-cni and grpc-health-probe join as they land.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin aws-k8s-agent --bin aws-cni --bin vpc-cni

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends iptables iproute2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/aws-k8s-agent /app/aws-k8s-agent
COPY --from=build /src/target/release/aws-cni /app/aws-cni
COPY --from=build /src/target/release/vpc-cni /app/vpc-cni
COPY crates/limits/data/eni-max-pods.txt /app/eni-max-pods.txt
ENTRYPOINT ["/app/aws-k8s-agent"]
