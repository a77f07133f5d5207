#!/usr/bin/env bash
# The run command: deploys the dev stack to a local kind cluster on a laptop with Docker,
# kind and the Pulumi CLI. State stays in a local file backend (no Pulumi Cloud account);
# images are built here and pushed to kind's local registry on localhost:5001, which the
# cluster pulls from by digest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER=ims
REGISTRY=kind-registry
REGISTRY_PORT=5001

for tool in docker kind pulumi python3; do
  command -v "$tool" >/dev/null || { echo "dev-up: $tool is not on PATH (see README, Prerequisites)" >&2; exit 1; }
done

# 1. A local registry and a kind cluster that pulls from it (kind's documented recipe).
if [ "$(docker inspect -f '{{.State.Running}}' "$REGISTRY" 2>/dev/null || true)" != true ]; then
  docker run -d --restart=always -p "127.0.0.1:${REGISTRY_PORT}:5000" --network bridge --name "$REGISTRY" registry:2
fi
if ! kind get clusters | grep -qx "$CLUSTER"; then
  cat <<YAML | kind create cluster --name "$CLUSTER" --config=-
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
YAML
  for node in $(kind get nodes --name "$CLUSTER"); do
    docker exec "$node" mkdir -p "/etc/containerd/certs.d/localhost:${REGISTRY_PORT}"
    printf '[host."http://%s:5000"]\n' "$REGISTRY" |
      docker exec -i "$node" cp /dev/stdin "/etc/containerd/certs.d/localhost:${REGISTRY_PORT}/hosts.toml"
  done
  docker network connect kind "$REGISTRY" 2>/dev/null || true
fi

# 2. Local state, the dev stack, its one secret.
mkdir -p .pulumi-state
export PULUMI_BACKEND_URL="file://$PWD/.pulumi-state"
export PULUMI_CONFIG_PASSPHRASE=${PULUMI_CONFIG_PASSPHRASE:-dev-passphrase-change-me}
pulumi stack select dev 2>/dev/null || pulumi stack init dev
for secret in valkeyPassword mongodbPassword; do
  if ! pulumi config get "$secret" >/dev/null 2>&1; then
    pulumi config set --secret "$secret" "$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  fi
done

# 3. Build, push and deploy.
pulumi up --yes --stack dev "$@"
