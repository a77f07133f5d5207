"""Engine tier, delivery workflow: the policy pack in a real preview, ephemeral stacks side by
side in one cluster, the PR preview comment and the reaper, all through the real Pulumi CLI.

The tests share the stacks pr-101, pr-501 and pr-103 of one file backend; each ups the ones it
needs when an earlier test did not leave them, so each also passes alone. Every other kwok node is cordoned for the module, so both
ephemeral stacks' rtpengine pods must share one node: both running there shows their host ports
do not collide (the scheduler refuses a pod whose host port is taken on the node).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cluster_common import copy_project, pulumi_env
from tests.engine.conftest import persistent_volume
from tests.engine.kubeapi import KubeApi
from tests.figures import record
from tests.tooling import ROOT

LAUNCHER = ROOT / "policy" / "ims-core-policy"
RULES = (
    "ims-container-resources",
    "ims-no-privilege-outside-allow-list",
    "ims-pinned-images",
    "ims-no-secrets-in-configmaps",
    "ims-networkpolicy-coverage",
    "ims-pod-security-level",
)
BUILDS_OFF = ("imageBuild=false", "imagePush=false", "imageRegistry=registry.example.net/ims-core")
DEPLOYMENTS = ("pcscf", "icscf", "scscf", "coredns", "rtpengine")


@dataclass
class Delivery:
    project: Path
    env: dict[str, str]
    kube: KubeApi
    kubeconfig: Path
    timings: dict[str, float]

    def run(self, argv, *, cwd: Path, check: bool = True, label: str = "") -> subprocess.CompletedProcess:
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=900)
        if label:
            self.timings[label] = time.perf_counter() - start
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def pulumi(self, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(["pulumi", *args, "--non-interactive"], cwd=cwd or self.project, check=check)

    def ephemeral(self, *args: str, check: bool = True, label: str = "") -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "delivery.ephemeral", "--project", str(self.project), *args]
        return self.run(argv, cwd=ROOT, check=check, label=label)

    def up(self, pr: int, label: str = "") -> subprocess.CompletedProcess:
        sets = [arg for value in BUILDS_OFF for arg in ("--set", value)]
        argv = ("up", "--pr", str(pr), "--kubeconfig", str(self.kubeconfig), *sets)
        return self.ephemeral(*argv, label=label or f"up pr-{pr}")

    def ensure(self, *prs: int) -> None:
        """Up the stacks a test needs if an earlier test did not leave them (tests stand alone)."""
        present = self.stacks()
        for pr in prs:
            if f"pr-{pr}" not in present:
                self.up(pr)

    def stacks(self) -> set[str]:
        listing = json.loads(self.pulumi("stack", "ls", "--json").stdout)
        return {s["name"] for s in listing}

    def available(self, namespace: str, name: str) -> tuple[int, int]:
        body = self.kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        return body["spec"]["replicas"], body.get("status", {}).get("availableReplicas", 0)

    def gone(self, path: str, timeout: float = 120) -> bool:
        deadline = time.monotonic() + timeout
        while self.kube.exists(path):
            if time.monotonic() > deadline:
                return False
            time.sleep(2)
        return True


def _set_unschedulable(kube: KubeApi, node: str, value: bool) -> None:
    for _ in range(10):  # kwok's heartbeats race the update: retry on conflict
        body = kube.get(f"/api/v1/nodes/{node}")
        body["spec"]["unschedulable"] = value
        status, answer = kube.request("PUT", f"/api/v1/nodes/{node}", body)
        if status == 200:
            return
        assert status == 409, answer
        time.sleep(0.5)
    raise AssertionError(f"could not set unschedulable={value} on node {node}")


@pytest.fixture(scope="module")
def delivery(engine_cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("delivery")
    project = copy_project(base / "ims-core")
    env = pulumi_env(base)
    kube = KubeApi(engine_cluster.kubeconfig)
    # What a storage provisioner would offer: a volume for each stack's Valkey claim.
    for n in range(3):
        volume = persistent_volume(f"delivery-pv-{n}", base / f"pv-{n}", reclaim="Delete")
        status, body = kube.request("POST", "/api/v1/persistentvolumes", volume)
        assert status in (200, 201), body
    nodes = sorted(n["metadata"]["name"] for n in kube.get("/api/v1/nodes")["items"])
    cordoned = nodes[1:]
    for node in cordoned:
        _set_unschedulable(kube, node, True)
    d = Delivery(project=project, env=env, kube=kube, kubeconfig=engine_cluster.kubeconfig, timings={})
    try:
        yield d
    finally:
        for node in cordoned:
            _set_unschedulable(kube, node, False)
        for name in sorted(d.stacks()):  # nothing left behind if a test stopped half-way
            if name.startswith("pr-"):
                d.ephemeral("down", "--pr", name.removeprefix("pr-"), check=False)
        record("engine: delivery wall times: " + ", ".join(f"{k} {v:.1f}s" for k, v in d.timings.items()))


# --- policy pack -------------------------------------------------------------------------------


def policy_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if "[mandatory]" in line or "[advisory]" in line]


def test_policy_pack_passes_the_shipped_stack_in_a_real_preview(delivery):
    delivery.pulumi("stack", "init", "policy")
    config = {"kubeconfig": str(delivery.kubeconfig), "namespace": "ims-policy", "pcscfRx": "false"}
    config.update(value.split("=", 1) for value in BUILDS_OFF)
    for key, value in config.items():
        delivery.pulumi("config", "set", "--stack", "policy", key, value)
    delivery.pulumi("config", "set", "--stack", "policy", "--secret", "valkeyPassword", "policy-preview-password")
    start = time.perf_counter()
    result = delivery.pulumi("preview", "--stack", "policy", "--color", "never", "--policy-pack", str(LAUNCHER))
    delivery.timings["preview with policies"] = time.perf_counter() - start
    output = result.stdout + result.stderr
    assert re.search(r"✅ ims-core@v0\.1\.0 \(local: .*ims-core-policy\)", output), output
    assert policy_lines(output) == [], output
    # Every rule ran on every resource: a value unknown in preview would say it could not.
    assert "can't run policy" not in output, output
    delivery.pulumi("stack", "rm", "--yes", "--stack", "policy")


def test_policy_pack_refuses_a_stack_that_breaks_every_rule(delivery, tmp_path):
    bad = copy_project(tmp_path / "bad", ROOT / "tests" / "engine" / "policy_bad", ("Pulumi.yaml", "__main__.py"))
    delivery.pulumi("stack", "init", "bad", cwd=bad)
    delivery.pulumi("config", "set", "--stack", "bad", "kubeconfig", str(delivery.kubeconfig), cwd=bad)
    result = delivery.pulumi(
        "preview", "--stack", "bad", "--color", "never", "--policy-pack", str(LAUNCHER), cwd=bad, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    lines = policy_lines(output)
    for rule in RULES:
        assert any(f"[mandatory]  {rule}" in line or f"[mandatory] {rule}" in line for line in lines), (rule, output)
    for expected in (
        "privileged container (never allowed)",
        "adds capability SYS_ADMIN",
        "image 'docker.io/library/busybox:latest' uses the floating tag 'latest'",
        "no requests.cpu, requests.memory, limits.memory",
        "contains a URL with a password",
        "Deployment tool: no NetworkPolicy selects its pods",
        "Namespace policy-bad: no pod-security.kubernetes.io/enforce label; its pods need 'privileged'",
    ):
        assert expected in output, (expected, output)
    assert not delivery.kube.exists("/api/v1/namespaces/policy-bad"), "a preview must create nothing"
    delivery.pulumi("stack", "rm", "--yes", "--stack", "bad", cwd=bad)


# --- ephemeral stacks --------------------------------------------------------------------------


def objects(delivery: Delivery, stack: str) -> list[dict]:
    """Every Kubernetes object of a stack, from its state."""
    state = json.loads(delivery.pulumi("stack", "export", "--stack", stack).stdout)
    found = []
    for resource in state["deployment"]["resources"]:
        outputs = resource.get("outputs") or {}
        if resource["type"].startswith("kubernetes:") and "kind" in outputs:
            meta = outputs["metadata"]
            found.append(
                {
                    "apiVersion": outputs["apiVersion"],
                    "kind": outputs["kind"],
                    "namespace": meta.get("namespace"),
                    "name": meta["name"],
                }
            )
    return found


def rtpengine_pod(delivery: Delivery, namespace: str) -> dict:
    pods = delivery.kube.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app.kubernetes.io%2Fname%3Drtpengine")
    (pod,) = pods["items"]
    return pod


def test_two_ephemeral_stacks_side_by_side_are_healthy_and_apart(delivery):
    first, second = delivery.up(101), delivery.up(501)
    # The policy pack ran at up, where every value is known, and passed.
    for result in (first, second):
        assert "✅ ims-core@v0.1.0" in result.stdout and "can't run policy" not in result.stdout, result.stdout
    # 101 and 501 prefer the same port slot (501 mod 400 = 101): the second takes the next free one.
    assert "pr-101: namespace ims-pr-101, media ports 43020-43039" in first.stdout, first.stdout
    assert "pr-501: namespace ims-pr-501, media ports 43040-43059" in second.stdout, second.stdout
    for namespace in ("ims-pr-101", "ims-pr-501"):
        for name in DEPLOYMENTS:
            wanted, ready = delivery.available(namespace, name)
            assert ready == wanted >= 1, f"{namespace}/{name}: {ready}/{wanted} available"
        sts = delivery.kube.get(f"/apis/apps/v1/namespaces/{namespace}/statefulsets/valkey")
        assert sts["status"].get("readyReplicas") == 1, sts["status"]

    # Every namespaced object in the stack's own namespace; cluster-scoped names all distinct.
    scoped = delivery.kube.namespaced_kinds()
    cluster_wide: dict[str, set[str]] = {}
    for pr in (101, 501):
        items = objects(delivery, f"pr-{pr}")
        assert len(items) > 20, items
        for item in items:
            if scoped[(item["apiVersion"], item["kind"])]:
                assert item["namespace"] == f"ims-pr-{pr}", item
        cluster_wide[f"pr-{pr}"] = {
            f"{i['kind']}/{i['name']}" for i in items if not scoped[(i["apiVersion"], i["kind"])]
        }
    assert cluster_wide["pr-101"] and not cluster_wide["pr-101"] & cluster_wide["pr-501"], cluster_wide

    # Both media relays run on the one schedulable node, on host ports of their own.
    pods = [rtpengine_pod(delivery, f"ims-pr-{pr}") for pr in (101, 501)]
    assert [p["status"]["phase"] for p in pods] == ["Running", "Running"], [p["status"] for p in pods]
    assert pods[0]["spec"]["nodeName"] == pods[1]["spec"]["nodeName"], [p["spec"]["nodeName"] for p in pods]
    ports = [
        {p["hostPort"] for c in pod["spec"]["containers"] for p in c.get("ports", []) if p.get("hostPort")}
        for pod in pods
    ]
    assert len(ports[0]) == len(ports[1]) == 20 and not ports[0] & ports[1], ports
    listing = delivery.ephemeral("list").stdout
    assert re.search(rf"^pr-101\t{min(ports[0])}-{max(ports[0])}$", listing, re.MULTILINE), listing


def test_a_colliding_host_port_would_not_be_scheduled(delivery):
    """The guard the test above relies on: a pod asking for a held host port stays Pending."""
    delivery.ensure(101, 501)
    taken = min(
        p["hostPort"]
        for p in rtpengine_pod(delivery, "ims-pr-101")["spec"]["containers"][0]["ports"]
        if p.get("hostPort")
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "port-collision"},
        "spec": {"containers": [{"name": "c", "image": "registry.example.net/probe:1", "ports": [{"containerPort": taken, "hostPort": taken, "protocol": "UDP"}]}]},
    }  # fmt: skip
    status, body = delivery.kube.request("POST", "/api/v1/namespaces/ims-pr-501/pods", pod)
    assert status == 201, body
    try:
        time.sleep(5)
        body = delivery.kube.get("/api/v1/namespaces/ims-pr-501/pods/port-collision")
        assert body["status"]["phase"] == "Pending" and not body["spec"].get("nodeName"), body["status"]
        conditions = json.dumps(body["status"].get("conditions", []))
        assert "free ports" in conditions, conditions
    finally:
        delivery.kube.request("DELETE", "/api/v1/namespaces/ims-pr-501/pods/port-collision?gracePeriodSeconds=0")


def test_pr_preview_comment_carries_the_diff(delivery, tmp_path):
    delivery.ensure(501)
    # A change a reviewer would see: one more IMS DNS pod (the CSCFs allow one replica each).
    delivery.pulumi("config", "set", "--stack", "pr-501", "corednsReplicas", "3")
    body = tmp_path / "comment.md"
    argv = [sys.executable, "-m", "delivery.preview", "--stack", "pr-501", "--project", str(delivery.project)]
    result = delivery.run([*argv, "--comment", str(body)], cwd=ROOT, label="PR preview")
    text = body.read_text()
    assert text.startswith("<!-- ims-core-preview:pr-501 -->\n### ✅ `pulumi preview --diff` of stack `pr-501`"), text
    assert re.search(r"~ kubernetes:apps/v1:Deployment: \(update\)\n\s+\[id=ims-pr-501/coredns\]", text), text
    assert re.search(r"~ replicas\s*: 1 => 3", text), text  # the ephemeral template runs one
    assert re.search(r"1 to update", text), text
    assert re.search(r"ims-core\|local\|\S*ims-core-policy\s+0\.1\.0", text) and "[mandatory]" not in text, text
    assert result.stdout.strip() in text
    delivery.pulumi("config", "rm", "--stack", "pr-501", "corednsReplicas")


def test_pr_preview_comment_of_a_policy_violation_fails(delivery, tmp_path):
    bad = copy_project(tmp_path / "bad", ROOT / "tests" / "engine" / "policy_bad", ("Pulumi.yaml", "__main__.py"))
    delivery.pulumi("stack", "init", "staging", cwd=bad)
    delivery.pulumi("config", "set", "--stack", "staging", "kubeconfig", str(delivery.kubeconfig), cwd=bad)
    body = tmp_path / "comment.md"
    argv = [
        sys.executable,
        "-m",
        "delivery.preview",
        "--stack",
        "staging",
        "--project",
        str(bad),
        "--comment",
        str(body),
    ]
    result = delivery.run(argv, cwd=ROOT, check=False)
    assert result.returncode == 1
    text = body.read_text()
    assert text.startswith("<!-- ims-core-preview:staging -->\n### ❌"), text
    assert re.search(r"preview failed: \d+ policy violation\(s\)", text), text
    for rule in RULES:
        assert rule in text, rule
    delivery.pulumi("stack", "rm", "--yes", "--stack", "staging", cwd=bad)


def snapshot(delivery: Delivery, namespace: str) -> dict[str, tuple]:
    """uid and generation of every object the stack owns in its namespace, and its pods' uids."""
    paths = [
        f"/api/v1/namespaces/{namespace}/{kind}"
        for kind in ("configmaps", "secrets", "services", "pods", "persistentvolumeclaims")
    ]
    paths += [f"/apis/apps/v1/namespaces/{namespace}/{kind}" for kind in ("deployments", "statefulsets")]
    paths += [f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"]
    found = {}
    for path in paths:
        for item in delivery.kube.get(path)["items"]:
            meta = item["metadata"]
            found[f"{item.get('kind') or path.rsplit('/', 1)[-1]}/{meta['name']}"] = (
                meta["uid"],
                meta.get("generation"),
            )
    namespace_meta = delivery.kube.get(f"/api/v1/namespaces/{namespace}")["metadata"]
    found["namespace"] = (namespace_meta["uid"], namespace_meta["resourceVersion"])
    return found


def test_destroying_one_stack_leaves_the_other_untouched(delivery):
    delivery.ensure(101, 501)
    before = snapshot(delivery, "ims-pr-501")
    assert len(before) > 20, before
    delivery.ephemeral("down", "--pr", "101", label="down pr-101")
    assert delivery.gone("/api/v1/namespaces/ims-pr-101"), "ims-pr-101 still there 120 s after down"
    assert "pr-101" not in delivery.stacks()
    assert not (delivery.project / "Pulumi.pr-101.yaml").exists()
    assert snapshot(delivery, "ims-pr-501") == before
    for name in DEPLOYMENTS:
        wanted, ready = delivery.available("ims-pr-501", name)
        assert ready == wanted >= 1, f"ims-pr-501/{name}: {ready}/{wanted} after pr-101 went"


def test_a_fresh_checkout_updates_the_same_stack_without_changes(delivery):
    """What the workflow does on every push: no Pulumi.pr-501.yaml, same config, no diff."""
    delivery.ensure(501)
    (delivery.project / "Pulumi.pr-501.yaml").unlink()
    result = delivery.up(501, label="re-up pr-501, fresh checkout")
    assert re.search(r"\d+ unchanged", result.stdout) and "to update" not in result.stdout, result.stdout
    delivery.pulumi("preview", "--stack", "pr-501", "--expect-no-changes")


def test_reaper_removes_only_closed_or_expired_stacks(delivery):
    delivery.ensure(501, 103)
    if "lab" not in delivery.stacks():
        delivery.pulumi("stack", "init", "lab")  # a long-lived stack in the same backend
    assert {"pr-501", "pr-103", "lab"} <= delivery.stacks()

    result = delivery.ephemeral("reap", "--open", "501,103")
    assert "reaper: nothing to remove" in result.stdout, result.stdout
    result = delivery.ephemeral("reap", "--open", "103", "--dry-run")
    assert "reaper: pr-501: pull request #501 is not open" in result.stdout, result.stdout
    assert {"pr-501", "pr-103"} <= delivery.stacks()

    result = delivery.ephemeral("reap", "--open", "103", label="reap closed")
    assert "pr-501: destroyed and removed" in result.stdout and "pr-103" not in result.stdout, result.stdout
    assert delivery.gone("/api/v1/namespaces/ims-pr-501")
    assert delivery.stacks() >= {"pr-103", "lab"} and "pr-501" not in delivery.stacks()
    assert delivery.available("ims-pr-103", "pcscf")[1] == 1

    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    result = delivery.ephemeral("reap", "--open", "103", "--ttl-hours", "1", "--now", later, label="reap expired")
    assert re.search(r"reaper: pr-103: older than 1:00:00", result.stdout), result.stdout
    assert delivery.gone("/api/v1/namespaces/ims-pr-103")
    assert "lab" in delivery.stacks() and not any(s.startswith("pr-") for s in delivery.stacks())
