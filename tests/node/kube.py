"""Small Kubernetes helpers for the node tier, over the API server's REST interface."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from tests.node import node as node_mod
from tests.node.images import VALKEY_IMAGE


def pods(node: node_mod.Node, namespace: str, selector: str = "") -> list[dict]:
    query = f"?labelSelector={selector}" if selector else ""
    status, body = node_mod.api(node, "GET", f"/api/v1/namespaces/{namespace}/pods{query}")
    assert status == 200, body
    return body["items"]


def is_ready(pod: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conditions.get("Ready") == "True" and pod["metadata"].get("deletionTimestamp") is None


def ready_seconds(pod: dict) -> float:
    """Seconds from the pod's creation to its Ready condition (API timestamps: 1 s resolution)."""
    created = _time(pod["metadata"]["creationTimestamp"])
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    return (_time(ready["lastTransitionTime"]) - created).total_seconds()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_for(what: str, predicate, timeout: float, node: node_mod.Node, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node.check_alive()
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_pod(
    node: node_mod.Node, namespace: str, name: str, script: str, labels: dict | None = None, timeout: float = 90
) -> tuple[str, str]:
    """Run `sh -c script` once in a throwaway pod (the Valkey test image: busybox, socat,
    valkey-cli); returns (phase, log)."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"ims-node-test": name}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "probe", "image": VALKEY_IMAGE, "command": ["sh", "-c", script]}],
        },
    }
    status, created = node_mod.api(node, "POST", f"/api/v1/namespaces/{namespace}/pods", body)
    assert status == 201, created
    path = f"/api/v1/namespaces/{namespace}/pods/{name}"
    try:
        pod = wait_for(
            f"pod {name} to finish",
            lambda: (
                (p := node_mod.api(node, "GET", path)[1]).get("status", {}).get("phase") in ("Succeeded", "Failed")
                and p
            ),
            timeout,
            node,
        )
        _, log = node_mod.api(node, "GET", f"{path}/log")
        return pod["status"]["phase"], log.get("raw", "")
    finally:
        node_mod.api(node, "DELETE", path)


def ensure_namespace(node: node_mod.Node, namespace: str) -> None:
    status, body = node_mod.api(
        node, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    assert status in (201, 409), body
    wait_for(
        f"the default ServiceAccount of {namespace}",
        lambda: node_mod.api(node, "GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")[0] == 200,
        60,
        node,
    )


def pod_memory_bytes(node: node_mod.Node, pod: dict) -> int:
    """Working set of a pod (memory cgroup usage minus inactive file cache), as kubectl top shows it."""
    uid = pod["metadata"]["uid"]
    root = Path("/sys/fs/cgroup/memory") / node.cgroup_root.lstrip("/") / "kubepods"
    for candidate in (root / f"pod{uid}", root / "burstable" / f"pod{uid}", root / "besteffort" / f"pod{uid}"):
        if candidate.is_dir():
            usage = int((candidate / "memory.usage_in_bytes").read_text())
            stat = dict(line.split() for line in (candidate / "memory.stat").read_text().splitlines())
            return max(0, usage - int(stat.get("total_inactive_file", 0)))
    raise AssertionError(f"no memory cgroup for pod {pod['metadata']['name']} under {root}")


def logs(node: node_mod.Node, namespace: str, nf: str, lines: int = 80) -> str:
    """The last lines of every container of an NF's pods (for a failing test's message)."""
    out = []
    for pod in pods(node, namespace, f"app.kubernetes.io/name={nf}"):
        name = pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            path = f"/api/v1/namespaces/{namespace}/pods/{name}/log?container={container['name']}&tailLines={lines}"
            _, body = node_mod.api(node, "GET", path)
            out.append(f"--- {name}/{container['name']}\n{body.get('raw', body)}")
    return "\n".join(out)
