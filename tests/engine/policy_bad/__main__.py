"""Test input for the ims-core policy pack: each object breaks one or more rules.

Only ever previewed (tests/engine/test_delivery.py): the real CLI must refuse it with a
violation of every rule of the pack.
"""

import pulumi
import pulumi_kubernetes as k8s

config = pulumi.Config()
provider = k8s.Provider("kubernetes", kubeconfig=config.require("kubeconfig"))
opts = pulumi.ResourceOptions(provider=provider)

# No pod-security.kubernetes.io/enforce label (ims-pod-security-level).
namespace = k8s.core.v1.Namespace("namespace", metadata={"name": "policy-bad"}, opts=opts)

# A password in a ConfigMap (ims-no-secrets-in-configmaps).
k8s.core.v1.ConfigMap(
    "settings",
    metadata={"namespace": namespace.metadata.name},
    data={"app.conf": "db_url = postgres://app:hunter2-hunter2@db:5432/app\n"},
    opts=opts,
)

# Privileged, SYS_ADMIN added, no requests or limits, image on latest; and no NetworkPolicy
# selects it (ims-no-privilege-outside-allow-list, ims-container-resources, ims-pinned-images,
# ims-networkpolicy-coverage).
labels = {"app.kubernetes.io/name": "tool"}
k8s.apps.v1.Deployment(
    "tool",
    metadata={"namespace": namespace.metadata.name, "name": "tool"},
    spec={
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": "tool",
                        "image": "docker.io/library/busybox:latest",
                        "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
                    }
                ]
            },
        },
    },
    opts=opts,
)
