#!/usr/bin/env bash
# Makes a Docker Swarm of four dockerd "nodes" on this one machine, for the runner's
# Swarm engine mode (lib/swarm.ts): one manager and three workers, each in a network
# namespace of its own (on a bridge, cdrswarm0, 10.77.0.0/24) and a PID namespace of its
# own (so that killing it is a node lost: its containers go with it), with its own
# data-root, exec-root, socket, pidfile, configuration, cgroup parent and containerd
# namespace. The workers are labelled for katas, each with its engine's socket; the
# kata images are loaded into every node. deploy/swarm/down.sh leaves the machine as it
# was. Needs root. Prints the manager's DOCKER_HOST.
set -euo pipefail
NODES=${SWARM_NODES:-4}
STATE=${SWARM_STATE:-/var/lib/cdr-swarm}
RUN=${SWARM_RUN:-/run/cdr-swarm}
BRIDGE=cdrswarm0
NET=10.77.0
IMAGES=${SWARM_IMAGES:-cyber-dojo-runner/base:bookworm cyber-dojo-runner/python-pytest:latest}

note() { printf '    %s\n' "$*" >&2; }
node_sock() { echo "$RUN/node-$1.sock"; }
on() { local node=$1; shift; docker -H "unix://$(node_sock "$node")" "$@"; }

if [ -S "$(node_sock 1)" ] && on 1 info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null | grep -qx active; then
  echo "unix://$(node_sock 1)"
  exit 0
fi
mkdir -p "$STATE" "$RUN"
ip link show "$BRIDGE" >/dev/null 2>&1 || {
  ip link add "$BRIDGE" type bridge
  ip addr add "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}
# The host's own engine drops what its firewall does not know (bridged traffic passes
# through it): the nodes' traffic between them is let through.
iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
for i in $(seq "$NODES"); do
  ns=cdr-node-$i
  ip netns add "$ns"
  ip link add "veth-cdr-$i" type veth peer name eth0 netns "$ns"
  ip link set "veth-cdr-$i" master "$BRIDGE" up
  ip netns exec "$ns" ip addr add "$NET.$((10 + i))/24" dev eth0
  ip netns exec "$ns" ip link set eth0 up
  ip netns exec "$ns" ip link set lo up
  mkdir -p "$STATE/node-$i" "$RUN/node-$i"
  echo '{}' >"$RUN/node-$i.json"
  # Kata nodes have no bridge: a container with no network has only lo (Swarm services
  # cannot ask for network none). Images are never pulled: there is no registry.
  # nsenter, not ip netns exec: that remounts /sys, and with it the cgroup mounts dockerd needs.
  setsid nsenter --net="/run/netns/$ns" unshare --pid --mount --fork --kill-child --mount-proc -- \
    env DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 dockerd \
      --host "unix://$(node_sock "$i")" --data-root "$STATE/node-$i" --exec-root "$RUN/node-$i" \
      --pidfile "$RUN/node-$i/docker.pid" --config-file "$RUN/node-$i.json" \
      --cgroup-parent "/cdr-swarm-node-$i" --containerd-namespace "cdr-node-$i" --containerd-plugins-namespace "cdr-node-$i-plugins" \
      --iptables=false --ip-masq=false --bridge=none \
      >>"$STATE/node-$i.log" 2>&1 </dev/null &
  echo $! >"$RUN/node-$i.unshare"
done
for i in $(seq "$NODES"); do
  for waited in $(seq 60); do on "$i" version >/dev/null 2>&1 && break; sleep 1; done
  on "$i" version >/dev/null || { tail -20 "$STATE/node-$i.log" >&2; exit 1; }
done
note "$NODES engines answer"
on 1 swarm init --advertise-addr "$NET.11" --listen-addr "$NET.11:2377" --dispatcher-heartbeat 1s >/dev/null
# No routing mesh (this kernel has no IPVS): no ingress network, no published ports.
echo y | on 1 network rm ingress >/dev/null
token=$(on 1 swarm join-token -q worker)
for i in $(seq 2 "$NODES"); do
  on "$i" swarm join --token "$token" --advertise-addr "$NET.$((10 + i))" "$NET.11:2377" >/dev/null
  id=$(on "$i" info --format '{{.Swarm.NodeID}}')
  on 1 node update --label-add katas=true --label-add "cyber-dojo-runner.engine=unix://$(node_sock "$i")" "$id" >/dev/null
done
note "swarm: 1 manager, $((NODES - 1)) workers labelled for katas"
for image in $IMAGES; do
  for i in $(seq "$NODES"); do docker save "$image" | on "$i" load -q >/dev/null; done
done
note "images loaded into every node: $IMAGES"
echo "unix://$(node_sock 1)"
