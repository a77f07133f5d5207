#!/bin/bash
# PID 1 of the node tier's PID namespace (started by tests/node/node.py through
# `unshare --mount --propagation private --pid --fork --mount-proc`, inside the node's network
# namespace). Starts containerd, the cluster DNS, kubelet, kube-proxy and kube-router; on
# SIGTERM stops them newest first. When this script exits the kernel kills whatever is left in
# the PID namespace (shims, containers), and the private mount namespace takes every mount the
# node made (overlays, volumes, pod network namespaces) with it.
#
# env: NODE_WORKDIR (configs from node.py, logs, state), NODE_BIN (kubelet, kube-proxy,
#      kube-router, coredns)
set -u
W=$NODE_WORKDIR
B=$NODE_BIN

# The node's runtime state lives on tmpfs private to this mount namespace: nothing it writes
# under /run (containerd shims, runc, pod netns), /var/lib (CNI cache) or /var/log (pod log
# links) reaches the host's directories.
for d in /run /var/lib /var/log; do
  mount -t tmpfs -o mode=0755 ims-node "$d" || exit 1
done
mkdir -p /run/netns /run/containerd

names=()
pids=()
start() {
  local name=$1; shift
  "$@" >"$W/logs/$name.log" 2>&1 &
  names+=("$name")
  pids+=($!)
  echo "$name $!" >>"$W/logs/started"
}

stop() {
  trap - TERM INT
  local i pid n
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for ((n = 0; n < 100; n++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    echo "${names[i]} stopped" >>"$W/logs/started"
  done
  exit 0
}
trap stop TERM INT

start containerd /usr/bin/containerd --config "$W/containerd.toml"
for ((n = 0; n < 300; n++)); do
  [ -S "$W/containerd/containerd.sock" ] && break
  sleep 0.1
done
start coredns "$B/coredns" -conf "$W/cluster-dns/Corefile"
start kubelet "$B/kubelet" --config="$W/kubelet.yaml" --kubeconfig="$W/kubeconfig" \
  --root-dir="$W/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
# kube-proxy and kube-router look up their Node at start: wait until node.py has seen it
# registered and given it its pod CIDR.
for ((n = 0; n < 1200; n++)); do
  [ -e "$W/node-registered" ] && break
  sleep 0.1
done
start kube-proxy "$B/kube-proxy" --config="$W/kube-proxy.yaml" --v=1
start kube-router "$B/kube-router" --kubeconfig="$W/kubeconfig" --hostname-override="$NODE_NAME" \
  --run-firewall=true --run-router=false --run-service-proxy=false --enable-ipv6=false \
  --service-cluster-ip-range="$SERVICE_CIDR" --metrics-port=0 --health-port=0 --v=1
touch "$W/logs/ready-to-serve"
reported=()
while true; do
  wait -n
  # A component that exits is logged once; node.py reads the log and fails the run.
  for ((i = 0; i < ${#pids[@]}; i++)); do
    if [ -z "${reported[i]:-}" ] && ! kill -0 "${pids[i]}" 2>/dev/null; then
      echo "${names[i]} exited" >>"$W/logs/started"
      reported[i]=1
    fi
  done
  sleep 1
done
