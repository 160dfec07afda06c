#!/usr/bin/env bash
# Builds the aws-node image (the Dockerfile's runtime stage) without any container registry:
#   1. the release binaries the Dockerfile's build stage names, from this workspace;
#   2. a Debian root filesystem made from Debian's packages by mmdebstrap (the suite of the
#      Dockerfile's `FROM debian:<suite>-slim`, slimmed as -slim is), in which the runtime
#      stage's RUN commands run as written (apt-get install, /init); imported into podman's
#      store as localhost/vpc-cni-rs-base:<hash of those inputs>, reused while they stay
#      the same;
#   3. `podman build` of the runtime stage on top of it, with the Dockerfile's COPY, WORKDIR
#      and ENTRYPOINT (scripts/image-plan.py reads them from the Dockerfile, so the two cannot
#      drift; crates/entrypoint/tests/dockerfile.rs and tests/tests/image_container.rs check
#      the plan and the built image against the Dockerfile).
#
#   bash scripts/build-image.sh [--image NAME] [--archive FILE.tar]
#
# --image: the name to give the image (default localhost/vpc-cni-rs:dev, or $VPC_CNI_IMAGE).
# --archive: also write the image as an OCI archive (`podman load -i FILE.tar` elsewhere).
# Prints the image's size, and its name as the last line. Needs root (mmdebstrap, podman).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${VPC_CNI_IMAGE:-localhost/vpc-cni-rs:dev}"
ARCHIVE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --image) IMAGE="$2"; shift 2 ;;
    --archive) ARCHIVE="$2"; shift 2 ;;
    *) echo "usage: $0 [--image NAME] [--archive FILE.tar]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (mmdebstrap, podman)" >&2; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vpc-cni-rs/target}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

need=()
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

WORK="$(mktemp -d /tmp/vpc-cni-image.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
python3 scripts/image-plan.py Dockerfile >"$WORK/plan.json"
# plan CODE [ARG...]: runs CODE with p = the plan (ARGs in sys.argv[3:]).
plan() {
  local code=$1
  shift
  python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); exec(sys.argv[2])' "$WORK/plan.json" "$code" "$@"
}

echo "== release binaries"
mapfile -t BINS < <(plan 'print("\n".join(p["bins"]))')
cargo build --release --locked $(printf -- '--bin %s ' "${BINS[@]}")

echo "== Debian base (mmdebstrap)"
SUITE="$(plan 'print(p["suite"])')"
plan 'print("\n".join(p["run"]))' >"$WORK/run.sh"
MMDEBSTRAP_ARGS=(--variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --aptopt='APT::Install-Recommends "false"')
if [ "$(plan 'print(p["slim"])')" = True ]; then
  # What debian:<suite>-slim drops: documentation (copyright notices kept), man and info
  # pages, locales, lintian overrides.
  for dir in doc man info locale groff lintian linda; do
    MMDEBSTRAP_ARGS+=(--dpkgopt="path-exclude=/usr/share/$dir/*")
  done
  MMDEBSTRAP_ARGS+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')
fi
SOURCES=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main"
  "deb $SECURITY_MIRROR $SUITE-security main")
KEY="$(printf '%s\n' "$SUITE" "${MMDEBSTRAP_ARGS[@]}" "${SOURCES[@]}" | cat - "$WORK/run.sh" |
  sha256sum | cut -c1-16)"
BASE="localhost/vpc-cni-rs-base:$KEY"
if podman image exists "$BASE"; then
  echo "reusing $BASE"
else
  # The Dockerfile's RUN commands, in the new root filesystem as they would run in the base
  # image (sh -ec: the first failing command fails the build).
  mmdebstrap "${MMDEBSTRAP_ARGS[@]}" \
    --customize-hook="chroot \"\$1\" sh -ec \"\$(cat '$WORK/run.sh')\"" \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$SUITE" "$WORK/rootfs.tar" "${SOURCES[@]}"
  podman import --quiet "$WORK/rootfs.tar" "$BASE" >/dev/null
  rm -f "$WORK/rootfs.tar"
  # Older bases (other inputs) are no longer needed.
  podman images --format '{{.Repository}}:{{.Tag}}' |
    grep '^localhost/vpc-cni-rs-base:' | grep -v ":$KEY\$" |
    xargs -r podman rmi --force >/dev/null 2>&1 || true
fi

echo "== image $IMAGE"
CTX="$WORK/context"
mkdir -p "$CTX"
plan 'print("\n".join("%s %s" % (c["src"], int(c["from_build"])) for c in p["copies"]))' |
  while read -r src from_build; do
    mkdir -p "$CTX/$(dirname "$src")"
    if [ "$from_build" = 1 ]; then
      # The build stage's /src/target/release/X is this workspace's release build.
      cp "$CARGO_TARGET_DIR/${src#target/}" "$CTX/$src"
    else
      cp "$src" "$CTX/$src"
    fi
  done
plan 'print(p["containerfile"].replace("@BASE@", sys.argv[3]), end="")' "$BASE" >"$CTX/Containerfile"
OLD_ID="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
podman build --quiet --pull=never --layers=false -t "$IMAGE" -f "$CTX/Containerfile" "$CTX" >/dev/null
NEW_ID="$(podman image inspect --format '{{.Id}}' "$IMAGE")"
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
  podman rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
if [ -n "$ARCHIVE" ]; then
  podman save --quiet --format oci-archive -o "$ARCHIVE" "$IMAGE"
  echo "archive: $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
fi
mb() { python3 -c 'import sys; print("%.1f MB" % (int(sys.argv[1]) / 1e6))' "$1"; }
echo "image size: $(mb "$(podman image inspect --format '{{.Size}}' "$IMAGE")")" \
  "(Debian $SUITE base with the packages: $(mb "$(podman image inspect --format '{{.Size}}' "$BASE")"))"
echo "$IMAGE"
