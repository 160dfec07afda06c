#!/usr/bin/env bash
# Keeps the persistent CARGO_TARGET_DIR bounded (it grew to tens of GB across runs): every
# test build leaves a new test binary beside the old ones. Keeps the newest binary of each
# test/bin target, and incremental caches used in the last 12 hours. Dependencies' compiled
# libraries are kept, so nothing slow is rebuilt.
set -euo pipefail
T="${CARGO_TARGET_DIR:-$HOME/.cache/vpc-cni-rs/target}"
[ -d "$T" ] || exit 0
before=$(du -sm "$T" | cut -f1)
for profile in debug release; do
  deps="$T/$profile/deps"
  [ -d "$deps" ] || continue
  # Executables are named <target>-<16 hex>; list newest first, drop all but the first of each.
  find "$deps" -maxdepth 1 -type f -perm -u+x -regextype posix-extended \
      -regex '.*/[A-Za-z0-9_]+-[0-9a-f]{16}' -printf '%T@ %f\n' \
    | sort -rn \
    | awk '{ name = substr($2, 1, length($2) - 17); if (seen[name]++) print $2 }' \
    | while read -r stale; do rm -f "$deps/$stale" "$deps/$stale.d"; done
  if [ -d "$T/$profile/incremental" ]; then
    find "$T/$profile/incremental" -mindepth 1 -maxdepth 1 -mmin +720 -exec rm -rf {} +
  fi
done
after=$(du -sm "$T" | cut -f1)
echo "target dir $T: ${before} MiB -> ${after} MiB"
