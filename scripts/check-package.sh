#!/usr/bin/env bash
# The crate as crates.io would get it: `cargo package` builds the archive (and checks the
# metadata and the file list), then every target of the unpacked archive is type-checked
# against its own manifest. That is `cargo package`'s verification with `check` in place
# of a full dev build (which compiles all of Burn in the dev profile, about 10 minutes on
# 2 cores): it sees the same missing files and manifest errors, and reuses the check
# artifacts of `cargo clippy`. Shares the target folder (CARGO_TARGET_DIR, default ./target).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo package --no-verify --allow-dirty -p burn-mixed
version=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "burn-mixed"))')
# Unpacked outside this workspace, which would otherwise claim it.
unpacked="$(mktemp -d "${TMPDIR:-/tmp}/burn-mixed-package.XXXXXX")"
trap 'rm -rf "$unpacked"' EXIT
tar -xzf "$CARGO_TARGET_DIR/package/burn-mixed-$version.crate" -C "$unpacked"
# The unpacked crate has no lock file of its own: use ours, as the verification would.
cp Cargo.lock "$unpacked/burn-mixed-$version/"
cargo check --all-targets --manifest-path "$unpacked/burn-mixed-$version/Cargo.toml"
echo "check-package: burn-mixed $version packages and every target of the package type-checks"
