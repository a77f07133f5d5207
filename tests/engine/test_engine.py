"""Engine tier: the real Pulumi CLI and Kubernetes plugin against a real kube-apiserver.

One stack goes through what users do: preview, up, a clean re-preview, setting changes that
preview exactly the resources they should (the data volumes' sizes among them), a bad config that creates nothing, destroy
and stack rm. The steps run in file order and share the stack.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.engine.conftest import changed, enable_charging

NS = "ims-engine"
DEPLOYMENTS = ("pcscf", "icscf", "scscf", "coredns", "rtpengine", "hss", "pcrf", "pgw")
CSCFS = ("pcscf", "icscf", "scscf")


def available(ws, name: str) -> tuple[int, int]:
    status, body = ws.api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")
    assert status == 200, body
    return body["spec"]["replicas"], body.get("status", {}).get("availableReplicas", 0)


@pytest.fixture
def stack_up(workspace):
    """The module's stack deployed, as test_up leaves it: a test that needs a running stack
    brings it up itself when it runs alone or under -k, and reuses it in a full run."""
    resources = json.loads(workspace.pulumi("stack", "export").stdout)["deployment"].get("resources") or []
    if not any(r["type"] == "kubernetes:core/v1:Namespace" for r in resources):
        workspace.timed("up (test run alone)", "up", "--yes", "--skip-preview")


def test_preview_of_a_new_stack_plans_every_nf(workspace):
    result = workspace.timed("preview", "preview", "--json")
    steps = json.loads(result.stdout)["steps"]
    creates = {s["urn"].split("::")[-1] for s in steps if s["op"] == "create"}
    expected = {f"{nf}-deployment" for nf in DEPLOYMENTS} | {"valkey-statefulset", "coredns-zones", "namespace"}
    expected |= {"mongodb-statefulset", "subscriber-provisioning-job", "subscriber-provisioning-subscribers"}
    assert expected <= creates, expected - creates
    status, _ = workspace.api("GET", f"/api/v1/namespaces/{NS}")
    assert status == 404, "preview must not create anything"


def test_up_creates_everything_and_workloads_become_available(workspace):
    workspace.timed("up", "up", "--yes", "--skip-preview")
    for name in DEPLOYMENTS:
        wanted, ready = available(workspace, name)
        assert ready == wanted >= 1, f"deployment {name}: {ready}/{wanted} available"
    for name in ("valkey", "mongodb"):
        status, sts = workspace.api("GET", f"/apis/apps/v1/namespaces/{NS}/statefulsets/{name}")
        assert status == 200 and sts["status"].get("readyReplicas") == 1, (name, sts.get("status"))
    status, jobs = workspace.api("GET", f"/apis/batch/v1/namespaces/{NS}/jobs")
    (job,) = jobs["items"]
    assert job["status"].get("succeeded") == 1, job.get("status")  # pulumi up waited for the provisioning

    outputs = json.loads(workspace.pulumi("stack", "output", "--json").stdout)
    status, svc = workspace.api("GET", f"/api/v1/namespaces/{NS}/services/pcscf")
    assert outputs["pcscfAddress"] == svc["spec"]["clusterIP"]
    # The IMS DNS zone follows the Services' real (assigned) addresses.
    status, dns = workspace.api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/coredns")
    zones = next(v["configMap"]["name"] for v in dns["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    status, cm = workspace.api("GET", f"/api/v1/namespaces/{NS}/configmaps/{zones}")
    zone = cm["data"][f"db.{outputs['imsDomain']}"]
    pcscf_a = rf"^pcscf\.{re.escape(outputs['imsDomain'])}\.\s+(\d+\s+)?IN\s+A\s+{re.escape(svc['spec']['clusterIP'])}$"
    assert re.search(pcscf_a, zone, re.MULTILINE), zone


@pytest.mark.usefixtures("stack_up")
def test_second_preview_reports_no_changes(workspace):
    workspace.timed("no-change preview", "preview", "--expect-no-changes")


@pytest.mark.usefixtures("stack_up")
def test_the_namespace_admits_what_baseline_would_refuse(workspace):
    """Pod Security Admission runs in this apiserver: our namespace's label admits rtpengine
    (host network), which a baseline namespace refuses; the CSCFs of the default stack pass
    baseline anyway."""
    status, ns = workspace.api("GET", f"/api/v1/namespaces/{NS}")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert "rtpengine: hostNetwork" in ns["metadata"]["annotations"]["ims-core.io/pod-security-reason"]
    scratch = f"{NS}-baseline"
    workspace.api(
        "POST",
        "/api/v1/namespaces",
        {"metadata": {"name": scratch, "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}},
    )
    try:
        verdicts = {}
        for name in ("rtpengine", "pcscf", "icscf"):
            _, deployment = workspace.api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")
            pod = {"metadata": {"name": f"psa-{name}"}, "spec": deployment["spec"]["template"]["spec"]}
            here, _ = workspace.api("POST", f"/api/v1/namespaces/{NS}/pods?dryRun=All", pod)
            there, body = workspace.api("POST", f"/api/v1/namespaces/{scratch}/pods?dryRun=All", pod)
            verdicts[name] = (here, there, body.get("message", ""))
        assert all(v[0] == 201 for v in verdicts.values()), verdicts
        assert verdicts["rtpengine"][1] == 403 and "hostNetwork" in verdicts["rtpengine"][2], verdicts
        # pcscfIpsec is off by default: the P-CSCF needs nothing beyond baseline (unit tests
        # cover the NET_ADMIN reason when it is on).
        assert verdicts["pcscf"][1] == 201 and verdicts["icscf"][1] == 201, verdicts
    finally:
        workspace.api("DELETE", f"/api/v1/namespaces/{scratch}")


@pytest.mark.usefixtures("stack_up")
def test_a_drain_keeps_one_ims_dns_pod_and_stops_at_valkey(workspace):
    """The disruption controller's verdicts, and the eviction a `kubectl drain` would send."""
    budgets = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        budgets = {
            name: workspace.api("GET", f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{name}")[1].get("status", {})
            for name in ("coredns", "valkey")
        }
        if budgets["coredns"].get("currentHealthy") == 2 and budgets["valkey"].get("currentHealthy") == 1:
            break
        time.sleep(1)
    assert budgets["coredns"]["disruptionsAllowed"] == 1 and budgets["valkey"]["disruptionsAllowed"] == 0, budgets
    status, body = workspace.api(
        "POST",
        f"/api/v1/namespaces/{NS}/pods/valkey-0/eviction",
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "valkey-0", "namespace": NS}},
    )
    assert status == 429 and "disruption budget" in body.get("message", ""), (status, body)
    # The scheduler spread the IMS DNS pods over both nodes.
    _, pods = workspace.api("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app.kubernetes.io%2Fname%3Dcoredns")
    nodes = [p["spec"].get("nodeName") for p in pods["items"]]
    assert len(nodes) == 2 and len(set(nodes)) == 2, nodes


def grows_in_place_and_refuses_a_shrink(workspace, key: str, statefulset: str, what: str) -> None:
    """`key` 1Gi -> 2Gi previews only the claim (and its guard) and expands the same claim in
    place; 2Gi -> 1Gi then fails preview and up with our message and changes nothing."""
    path = f"/api/v1/namespaces/{NS}/persistentvolumeclaims/data-{statefulset}-0"
    _, before = workspace.api("GET", path)
    workspace.pulumi("config", "set", key, "2Gi")
    diff = changed(workspace.preview_steps())
    assert diff == {f"{statefulset}-data": {"update"}, f"{statefulset}-storage-size": {"update"}}, diff
    workspace.pulumi("up", "--yes", "--skip-preview")
    status, claim = workspace.api("GET", path)
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi", claim["spec"]
    assert claim["metadata"]["uid"] == before["metadata"]["uid"], "the claim was replaced, not expanded"
    workspace.pulumi("config", "set", key, "1Gi")
    try:
        for command in (("preview",), ("up", "--yes", "--skip-preview")):
            result = workspace.pulumi(*command, check=False)
            output = result.stdout + result.stderr
            assert result.returncode != 0, command
            assert f"{key} = '1Gi': smaller than the 2Gi the {what} already has" in output, output
    finally:
        workspace.pulumi("config", "set", key, "2Gi")
    status, claim = workspace.api("GET", path)
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    workspace.pulumi("preview", "--expect-no-changes")


@pytest.mark.usefixtures("stack_up")
@pytest.mark.parametrize(
    ("key", "statefulset", "what"),
    [("valkeyStorage", "valkey", "Valkey volume claim"), ("mongodbStorage", "mongodb", "MongoDB volume claim")],
)
def test_storage_grows_in_place_and_a_shrink_is_refused_at_preview(workspace, key, statefulset, what):
    grows_in_place_and_refuses_a_shrink(workspace, key, statefulset, what)


@pytest.mark.usefixtures("stack_up")
def test_adding_a_subscriber_previews_only_the_subscriber_secret_and_the_provisioning_job(workspace):
    from tests.engine.conftest import ENGINE_SUBSCRIBERS, add_subscriber

    add_subscriber(workspace, 2, ENGINE_SUBSCRIBERS[2])
    diff = changed(workspace.preview_steps())
    assert set(diff) == {"subscriber-provisioning-subscribers", "subscriber-provisioning-job"}, diff
    assert all(ops & {"replace", "create-replacement"} for ops in diff.values()), diff
    workspace.pulumi("up", "--yes", "--skip-preview")
    # The subscriber Secret holds K and OPc; the stack state holds them only as secrets.
    state = workspace.pulumi("stack", "export").stdout
    assert ENGINE_SUBSCRIBERS[0]["opc"] not in state
    workspace.pulumi("preview", "--expect-no-changes")


@pytest.mark.usefixtures("stack_up")
def test_replica_change_previews_only_the_ims_dns_deployment(workspace):
    # The IMS DNS is stateless: the one NF that scales (the CSCFs and rtpengine must stay at 1).
    workspace.pulumi("config", "set", "corednsReplicas", "3")
    assert changed(workspace.preview_steps()) == {"coredns-deployment": {"update"}}
    workspace.timed("update", "up", "--yes", "--skip-preview")
    assert available(workspace, "coredns") == (3, 3)


@pytest.mark.usefixtures("stack_up")
def test_ims_domain_change_previews_the_cscfs_and_dns_only(workspace):
    workspace.pulumi("config", "set", "imsDomain", "ims.engine.example.net")
    diff = changed(workspace.preview_steps())
    # The HSS and PCRF name the CSCFs by their IMS FQDNs (freeDiameter ConnectPeer) and follow too.
    configs = {f"{role}-config" for role in (*CSCFS, "hss", "pcrf")} | {"coredns-zones"}
    workloads = {f"{role}-deployment" for role in (*CSCFS, "hss", "pcrf")} | {"coredns-deployment"}
    secrets = {f"{role}-secrets" for role in CSCFS}
    assert configs | workloads <= set(diff), diff
    assert set(diff) <= configs | workloads | secrets, (
        f"unexpected changes: {set(diff) - configs - workloads - secrets}"
    )
    for name in configs:
        assert diff[name] & {"replace", "create-replacement"}, f"{name}: {diff[name]} (config change must replace)"
    for name in workloads:
        assert diff[name] == {"update"}, f"{name}: {diff[name]}"
    workspace.pulumi("up", "--yes", "--skip-preview")
    status, cscf = workspace.api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/pcscf")
    sources = cscf["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
    config_name = next(s["configMap"]["name"] for s in sources if "configMap" in s)
    status, cm = workspace.api("GET", f"/api/v1/namespaces/{NS}/configmaps/{config_name}")
    assert status == 200 and "ims.engine.example.net" in json.dumps(cm["data"])
    workspace.pulumi("preview", "--expect-no-changes")


@pytest.mark.usefixtures("stack_up")
def test_bad_config_fails_with_our_message_and_changes_nothing(workspace):
    before = json.loads(workspace.pulumi("stack", "export").stdout)["deployment"]["resources"]
    workspace.pulumi("config", "set", "mcc", "12")
    try:
        for command in (("preview",), ("up", "--yes", "--skip-preview")):
            result = workspace.pulumi(*command, check=False)
            output = result.stdout + result.stderr
            assert result.returncode != 0, command
            assert "mcc = '12': must be exactly 3 digits" in output, output
            assert "Traceback" not in output, "a config error must not show a stack trace"
    finally:
        workspace.pulumi("config", "set", "mcc", "001")
    after = json.loads(workspace.pulumi("stack", "export").stdout)["deployment"]["resources"]
    assert [r["urn"] for r in after] == [r["urn"] for r in before]
    workspace.pulumi("preview", "--expect-no-changes")


@pytest.mark.usefixtures("stack_up")
def test_charging_on_previews_and_comes_up(workspace):
    enable_charging(workspace)
    diff = changed(workspace.preview_steps())
    expected = {"cgrates-deployment", "cgrates-stordb-statefulset", "cgrates-loader", "cgrates-plan", "cgrates-config"}
    assert expected <= set(diff), diff
    workspace.timed("up with charging", "up", "--yes", "--skip-preview")
    assert available(workspace, "cgrates") == (1, 1)
    status, sts = workspace.api("GET", f"/apis/apps/v1/namespaces/{NS}/statefulsets/cgrates-stordb")
    assert status == 200 and sts["status"].get("readyReplicas") == 1, sts.get("status")
    status, jobs = workspace.api("GET", f"/apis/batch/v1/namespaces/{NS}/jobs")
    (job,) = [j for j in jobs["items"] if j["metadata"]["name"].startswith("cgrates-loader")]
    assert job["status"].get("succeeded") == 1, job.get("status")
    workspace.pulumi("preview", "--expect-no-changes")


def charging_on(ws) -> None:
    """test_charging_on...'s settings, set and deployed if they are not yet (a run alone)."""
    if ws.pulumi("config", "get", "--path", "charging.enabled", check=False).stdout.strip() != "true":
        enable_charging(ws)
        ws.timed("up with charging (test run alone)", "up", "--yes", "--skip-preview")


@pytest.mark.usefixtures("stack_up")
def test_tariff_change_previews_only_the_plan_and_the_loader_job(workspace):
    charging_on(workspace)
    workspace.pulumi("config", "set", "--path", "charging.destinations[0].pricePerMinute", "0.2", "--type", "float")
    diff = changed(workspace.preview_steps())
    assert set(diff) == {"cgrates-plan", "cgrates-loader"}, diff
    for name in diff:
        assert diff[name] & {"replace", "create-replacement"}, f"{name}: {diff[name]}"
    workspace.pulumi("up", "--yes", "--skip-preview")


@pytest.mark.usefixtures("stack_up")
def test_stordb_storage_grows_in_place_and_a_shrink_is_refused_at_preview(workspace):
    charging_on(workspace)
    grows_in_place_and_refuses_a_shrink(
        workspace, "cgratesStorDbStorage", "cgrates-stordb", "CGRateS StorDB volume claim"
    )


@pytest.mark.usefixtures("stack_up")
def test_a_valkey_password_in_plain_text_is_refused(workspace):
    workspace.pulumi("config", "set", "valkeyPassword", "plain-text-password-12345")
    try:
        result = workspace.pulumi("preview", check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "valkeyPassword = <not shown>: set in plain text in the stack config file" in output, output
        assert "plain-text-password-12345" not in output
    finally:
        workspace.pulumi("config", "rm", "valkeyPassword")
    workspace.pulumi("preview", "--expect-no-changes")


@pytest.mark.usefixtures("stack_up")
def test_destroy_leaves_nothing_and_the_stack_can_be_removed(workspace):
    workspace.timed("destroy", "destroy", "--yes", "--skip-preview")
    deadline = time.monotonic() + 120
    while True:
        status, body = workspace.api("GET", f"/api/v1/namespaces/{NS}")
        if status == 404:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"namespace {NS} still there 120s after destroy: {body.get('status')}")
        time.sleep(2)
    for path in ("/apis/apps/v1/deployments", "/apis/apps/v1/statefulsets", "/api/v1/services", "/api/v1/configmaps"):
        status, body = workspace.api("GET", f"{path}?labelSelector=app.kubernetes.io%2Fpart-of%3Dims-core")
        assert status == 200 and body["items"] == [], f"{path}: {[i['metadata']['name'] for i in body['items']]}"
    workspace.pulumi("stack", "rm", "--yes")
