#!/usr/bin/env bash
# Takes down what deploy/swarm/up.sh made, and leaves the machine as it was: the nodes'
# PID namespaces (their dockerd, containerd and containers with them), network
# namespaces, links, bridge, cgroups and state.
set -uo pipefail
STATE=${SWARM_STATE:-/var/lib/cdr-swarm}
RUN=${SWARM_RUN:-/run/cdr-swarm}
for pidfile in "$RUN"/node-*.unshare; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  # The node's PID 1 is unshare's child: killing it kills the whole namespace.
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill -9 "$child" 2>/dev/null; done
  kill -9 "$pid" 2>/dev/null
done
sleep 1
for ns in $(ip netns list 2>/dev/null | awk '/^cdr-node-/ {print $1}'); do ip netns delete "$ns"; done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '/veth-cdr-/ {print $2}' | cut -d@ -f1); do ip link delete "$link" 2>/dev/null; done
ip link delete cdrswarm0 2>/dev/null
while iptables -D FORWARD -i cdrswarm0 -o cdrswarm0 -j ACCEPT 2>/dev/null; do :; done
for dir in /sys/fs/cgroup/*/cdr-swarm-node-* /sys/fs/cgroup/cdr-swarm-node-*; do
  [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
done
rm -rf "$STATE" "$RUN"
exit 0
