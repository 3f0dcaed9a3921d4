#!/usr/bin/env bash
# Prepares the patched burn-collective and burn-communication 0.21.0 that the multiprocess
# workspace builds against (its `[patch.crates-io]`): takes each crate's source as cargo
# fetched it from crates.io, copies it to multiprocess/patched/, and applies our diff from
# multiprocess/patches/. The repository holds only the diffs. Reruns are free: a crate is
# re-extracted only when its patch changed. What the patches change: docs/multi-process.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
patched="$root/multiprocess/patched"
crates=(burn-collective burn-communication)
version=0.21.0
mkdir -p "$patched"

stamp() { sha256sum "$root/multiprocess/patches/$1-$version.patch" | cut -d' ' -f1; }

up_to_date=true
for crate in "${crates[@]}"; do
    [ "$(cat "$patched/$crate-$version/.burn-mixed-patch" 2>/dev/null)" = "$(stamp "$crate")" ] || up_to_date=false
done
$up_to_date && exit 0

# A throwaway manifest that depends on exactly these versions: `cargo fetch` downloads and
# unpacks them into cargo's registry source cache (or finds them there).
fetch="$patched/.fetch"
mkdir -p "$fetch/src"
: > "$fetch/src/lib.rs"
{
    printf '[package]\nname = "fetch-collective"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n[dependencies]\n'
    for crate in "${crates[@]}"; do printf '%s = "=%s"\n' "$crate" "$version"; done
} > "$fetch/Cargo.toml"
cargo fetch --quiet --manifest-path "$fetch/Cargo.toml"

registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
for crate in "${crates[@]}"; do
    source_dir=$(ls -d "$registry"/*/"$crate-$version" | head -n 1)
    [ -n "$source_dir" ] || { echo "error: $crate $version not found under $registry after cargo fetch" >&2; exit 1; }
    rm -rf "$patched/$crate-$version"
    cp -r "$source_dir" "$patched/$crate-$version"
    chmod -R u+w "$patched/$crate-$version"
    # The ceiling keeps git from finding this repository above the copy (inside a repository,
    # git apply applies paths relative to its root and skips the rest without a word).
    (cd "$patched/$crate-$version" && GIT_CEILING_DIRECTORIES="$patched" git apply --whitespace=nowarn "$root/multiprocess/patches/$crate-$version.patch")
    grep -rq "burn-mixed patch" "$patched/$crate-$version/src" || { echo "error: the patch of $crate did not apply" >&2; exit 1; }
    stamp "$crate" > "$patched/$crate-$version/.burn-mixed-patch"
    echo "patched $crate $version ($patched/$crate-$version)"
done
