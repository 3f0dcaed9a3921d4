#!/usr/bin/env bash
# Two "machines" on this one: two network namespaces joined by a veth pair (10.77.0.1 and
# 10.77.0.2), each with its own network stack, so that nothing travels over loopback.
# Runs the recipe of docs/multi-process.md: the orchestrator and node 0 on the first,
# node 1 on the second, listening on every interface; checks that both hold the same
# parameters after every step, and that an orchestrator left on its default (loopback)
# cannot be reached from the other machine. Needs root and iproute2 (`ip netns`); run
# after scripts/check-multiprocess.sh, which builds the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/multiprocess"
[ -x "$bin" ] || { echo "error: $bin not built: run scripts/check-multiprocess.sh first" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
    echo "error: network namespaces need root; not run" >&2
    exit 1
fi
command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }

a=mp-host-a b=mp-host-b
remove_namespaces() {
    for ns in "$a" "$b"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
}
out=$(mktemp -d)
trap 'remove_namespaces; rm -rf "$out"' EXIT
remove_namespaces
ip netns add "$a"
ip netns add "$b"
ip link add mp-veth-a type veth peer name mp-veth-b
ip link set mp-veth-a netns "$a"
ip link set mp-veth-b netns "$b"
ip -n "$a" addr add 10.77.0.1/24 dev mp-veth-a
ip -n "$b" addr add 10.77.0.2/24 dev mp-veth-b
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set mp-veth-a up
ip -n "$b" link set mp-veth-b up

train=(--precision=16-mixed --steps=10 --d-model=32 --layers=1 --d-ff=64 --global-batch=24 --timeout-secs=30)
# The orchestrators run detached (a subshell's jobs), so killing them at the end is silent.
(ip netns exec "$a" "$bin" orchestrator --port 3777 --listen 0.0.0.0 2>"$out/orchestrator.err" &)
ip netns exec "$a" "$bin" node --nodes 2 --node-rank 0 --orchestrator ws://10.77.0.1:3777 \
    --address ws://10.77.0.1:3800 --port 3800 --listen 0.0.0.0 "${train[@]}" >"$out/node0" 2>"$out/node0.err" &
node0=$!
ip netns exec "$b" "$bin" node --nodes 2 --node-rank 1 --orchestrator ws://10.77.0.1:3777 \
    --address ws://10.77.0.2:3801 --port 3801 --listen 0.0.0.0 "${train[@]}" >"$out/node1" 2>"$out/node1.err" || {
    echo "error: node 1 failed:" >&2; cat "$out/node1.err" >&2; exit 1; }
wait "$node0" || { echo "error: node 0 failed:" >&2; cat "$out/node0.err" >&2; exit 1; }
steps() { grep '^step ' "$1" | awk '{print $2, $6, $8, $12}'; }
[ "$(steps "$out/node0" | wc -l)" = 10 ] || { echo "error: node 0 did not train 10 steps" >&2; cat "$out/node0" >&2; exit 1; }
if ! diff <(steps "$out/node0") <(steps "$out/node1") >&2; then
    echo "error: the two machines' parameters differ" >&2
    exit 1
fi
echo "ok: 10 steps of 16-mixed on two network namespaces, the same parameters on both after every step"
ip netns pids "$a" | xargs -r kill -9
sleep 0.2

# On its default interface (loopback) the orchestrator is out of the other machine's reach.
(ip netns exec "$a" "$bin" orchestrator --port 3778 2>/dev/null &)
sleep 0.5
if ip netns exec "$b" "$bin" node --nodes 1 --node-rank 0 --orchestrator ws://10.77.0.1:3778 \
    --connect-timeout-secs 2 --steps 1 2>"$out/refused.err"; then
    echo "error: an orchestrator listening on loopback was reached from another machine" >&2
    exit 1
fi
grep -q "cannot reach the orchestrator at ws://10.77.0.1:3778" "$out/refused.err" || { cat "$out/refused.err" >&2; exit 1; }
echo "ok: an orchestrator on its default (loopback) cannot be reached from the other machine"
