"""What a platform team checks before the stack goes on a real cluster: who gets the Valkey
password, start-up order and health checks, Pod Security Admission, disruption budgets and
spreading, the Valkey claim, and the generated password."""

from __future__ import annotations

import json

from components.interfaces import valkey_clients
from components.render import kamailio as render_kamailio
from components.settings import CSCF_ROLES, DEPLOYED_NFS
from tests.unit.conftest import GENERATED_PASSWORD, container, pod_spec, resolve, run_program

PDB = "kubernetes:policy/v1:PodDisruptionBudget"
SECRET = "kubernetes:core/v1:Secret"


def test_the_interfaces_table_and_the_shipped_configs_agree_on_who_uses_valkey():
    for role in CSCF_ROLES:
        cfg = (render_kamailio.SHIPPED / role / "kamailio.cfg").read_text()
        assert ("VALKEY_URL" in cfg) == (role in valkey_clients()), role


def test_only_valkey_clients_get_its_password(dev_run):
    secrets = {r.name for r in dev_run.mocks.of_type(SECRET)}
    assert {"pcscf-secrets", "icscf-secrets"} <= secrets and "scscf-secrets" not in secrets
    volume = pod_spec(dev_run.mocks.named("scscf-deployment"))["volumes"][0]
    assert all("secret" not in source for source in volume["projected"]["sources"])
    assert "password" not in json.dumps(container(dev_run.mocks.named("scscf-deployment")).get("env", []))


def test_every_cscf_waits_for_the_ims_dns_first_with_a_deadline(dev_run):
    dns_ip = resolve(dev_run.outputs["imsDnsAddress"])
    for role in CSCF_ROLES:
        first = pod_spec(dev_run.mocks.named(f"{role}-deployment"))["initContainers"][0]
        script = resolve(first["command"][-1])
        assert first["name"] == "wait-for-ims-dns"
        assert f"nslookup {role}.ims.mnc001.mcc001.3gppnetwork.org {dns_ip}" in script
        assert "gave up after 300s: the IMS DNS at" in script and "exit 1" in script
        assert first["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_a_wrong_valkey_password_stops_the_wait_at_once_with_a_message(dev_run):
    wait = pod_spec(dev_run.mocks.named("pcscf-deployment"))["initContainers"][1]
    script = resolve(wait["command"][-1])
    assert "*WRONGPASS*" in script and "exit 2" in script
    assert "refuses the password from Secret valkey-auth-" in script


def test_kamailio_has_a_liveness_probe_slower_than_readiness(dev_run):
    for role in CSCF_ROLES:
        c = container(dev_run.mocks.named(f"{role}-deployment"))
        live, ready = c["livenessProbe"], c["readinessProbe"]
        assert live["exec"]["command"][0] == "/usr/local/bin/sip-options-probe"
        assert live["periodSeconds"] * live["failureThreshold"] >= 60 > ready["periodSeconds"] * ready["failureThreshold"]


def test_namespace_admits_what_the_stack_needs_and_says_why():
    for ipsec, exposure, reasons in (
        ("true", "hostNetwork", ["rtpengine: hostNetwork", "pcscf: hostNetwork", "pcscf: capability NET_ADMIN"]),
        ("false", "hostPort", ["rtpengine: hostPort"]),
    ):
        gm = "hostNetwork" if ipsec == "true" else "service"  # IPsec needs Gm on the node
        run = run_program(
            {"pcscfIpsec": ipsec, "pcscfGmExposure": gm, "rtpengineMediaExposure": exposure, "rtpenginePortMax": "40099"}
        )
        assert run.error is None, run.error
        metadata = run.mocks.named("namespace").inputs["metadata"]
        assert metadata["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
        assert metadata["labels"]["pod-security.kubernetes.io/audit"] == "baseline"
        why = metadata["annotations"]["ims-core.io/pod-security-reason"]
        assert all(r in why for r in reasons) and ("NET_ADMIN" in why) == (ipsec == "true"), why
        assert ("pcscf: hostNetwork" in why) == (gm == "hostNetwork"), why


def test_ims_dns_survives_a_drain_and_valkey_waits_for_its_operator(dev_run):
    budgets = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in dev_run.mocks.of_type(PDB)}
    assert set(budgets) == {"coredns", "valkey"}
    assert budgets["coredns"]["maxUnavailable"] == 1
    assert budgets["valkey"]["maxUnavailable"] == 0
    for name, spec in budgets.items():
        assert spec["selector"]["matchLabels"]["app.kubernetes.io/name"] == name
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow", "a broken pod must never block a drain"
    dns = pod_spec(dev_run.mocks.named("coredns-deployment"))
    (node,) = [c for c in dns["topologySpreadConstraints"] if c["topologyKey"] == "kubernetes.io/hostname"]
    assert node["whenUnsatisfiable"] == "DoNotSchedule" and node["maxSkew"] == 1
    assert dev_run.mocks.named("coredns-deployment").inputs["spec"]["replicas"] >= 2


def test_valkey_storage_is_guarded_against_shrinking():
    run = run_program({"valkeyStorage": "3Gi"})
    guard = run.mocks.named("valkey-storage-size")
    assert guard.inputs["size"] == "3Gi" and guard.inputs["key"] == "valkeyStorage"
    claim = run.mocks.named("valkey-data")
    assert claim.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


def test_without_a_configured_password_the_stack_generates_one_and_uses_it_everywhere(dev_run):
    generated = dev_run.mocks.named("valkey-password")
    assert generated.inputs["length"] >= 16
    auth = dev_run.mocks.named("valkey-auth").inputs["stringData"]["value"]
    assert auth["password"] == GENERATED_PASSWORD
    for role in valkey_clients():
        if role in DEPLOYED_NFS:
            secret = dev_run.mocks.named(f"{role}-secrets").inputs["stringData"]["value"]
            assert f":{GENERATED_PASSWORD}@" in secret[render_kamailio.SECRETS_FILE]


def test_a_configured_password_creates_no_generator():
    run = run_program({"valkeyPassword": "a-configured-password-99"})
    assert not [r for r in run.resources if r.name == "valkey-password"]
