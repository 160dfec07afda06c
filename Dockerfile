# syntax=docker/dockerfile:1
# Multi-stage build of the node image. Only the binaries that exist today are copied;
# the agent, the CNI plugins and the entrypoint join as they land.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin vpc-cni

FROM debian:bookworm-slim
WORKDIR /app
COPY --from=build /src/target/release/vpc-cni /app/vpc-cni
COPY crates/limits/data/eni-max-pods.txt /app/eni-max-pods.txt
ENTRYPOINT ["/app/vpc-cni"]
