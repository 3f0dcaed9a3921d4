#!/usr/bin/env bash
# The project's test command: every test, on every backend compiled by default
# (Flex, NdArray, Wgpu), in one release build.
#
# Wgpu needs a Vulkan driver. On a machine without a GPU that is Mesa's lavapipe (Debian
# package mesa-vulkan-drivers); this script installs it when it can. When it cannot, it
# says so loudly and runs the Flex and NdArray tests only -- except under CI, where a
# missing driver is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

has_vulkan_driver() {
    local icd
    for icd in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
        [ -e "$icd" ] && return 0
    done
    return 1
}

if ! has_vulkan_driver; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing Mesa's lavapipe Vulkan driver (mesa-vulkan-drivers) for the Wgpu tests"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq mesa-vulkan-drivers >/dev/null
    fi
fi

features=()
if ! has_vulkan_driver; then
    if [ "${CI:-}" = true ]; then
        echo "error: no Vulkan driver, so the Wgpu tests cannot run; CI must run them" >&2
        exit 1
    fi
    cat >&2 <<'MSG'
############################################################################
#  WARNING: no Vulkan driver found and none could be installed (needs root #
#  and apt-get: `apt-get install mesa-vulkan-drivers`).                    #
#  SKIPPING THE WGPU TESTS; running Flex and NdArray only.                 #
############################################################################
MSG
    features=(--no-default-features --features flex,ndarray)
    # The backend-tests crate owns the backend features; the library builds with Flex.
    cargo test --release -p backend-tests "${features[@]}" "$@"
    cargo test --release -p burn-mixed "$@"
    exit 0
fi

cargo test --release --workspace "$@"
