"""The resource graph of a stack under mocks: what a user sees in `pulumi preview`."""

from __future__ import annotations

import json
import re

from components.settings import CSCF_ROLES
from tests.unit.conftest import container, pod_spec, resolve, run_program

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
IMAGE = "docker:index/image:Image"

# IPsec needs a Gm exposure that ESP can traverse (settings refuse it with the Service).
IPSEC_ON = {"pcscfIpsec": "true", "pcscfGmExposure": "hostNetwork"}


def test_dev_stack_has_one_component_per_nf(dev_run):
    components = {(r.typ, r.name) for r in dev_run.resources if r.typ.startswith("ims:")}
    assert components == {
        ("ims:images:ImagePipeline", "images"),
        ("ims:kamailio:Cscf", "pcscf"),
        ("ims:kamailio:Cscf", "icscf"),
        ("ims:kamailio:Cscf", "scscf"),
        ("ims:valkey:Valkey", "valkey"),
        ("ims:dns:ImsDns", "coredns"),
        ("ims:media:Rtpengine", "rtpengine"),
        ("ims:open5gs:SubscriberDb", "mongodb"),
        ("ims:open5gs:SubscriberProvisioning", "subscriber-provisioning"),
        ("ims:open5gs:Hss", "hss"),
        ("ims:open5gs:Pcrf", "pcrf"),
        ("ims:open5gs:Pgw", "pgw"),
    }
    deployments = {r.inputs["metadata"]["name"] for r in dev_run.mocks.of_type(DEPLOYMENT)}
    assert deployments == {"pcscf", "icscf", "scscf", "coredns", "rtpengine", "hss", "pcrf", "pgw"}
    statefulsets = {r.inputs["metadata"]["name"] for r in dev_run.mocks.of_type("kubernetes:apps/v1:StatefulSet")}
    assert statefulsets == {"valkey", "mongodb"}


def test_every_kubernetes_object_uses_the_explicit_provider_and_namespace(dev_run):
    for r in dev_run.resources:
        if not r.typ.startswith("kubernetes:"):
            continue
        assert r.provider and "pulumi:providers:kubernetes::kubernetes::" in r.provider, (r.name, r.provider)
        if r.typ != "kubernetes:core/v1:Namespace":
            assert r.inputs["metadata"]["namespace"] == "ims", r.name


def test_objects_carry_the_recommended_labels(dev_run):
    for r in dev_run.resources:
        if r.typ.startswith("kubernetes:") and r.typ != "kubernetes:core/v1:Namespace":
            labels = r.inputs["metadata"]["labels"]
            assert labels["app.kubernetes.io/part-of"] == "ims-core", r.name
            assert labels["app.kubernetes.io/managed-by"] == "pulumi", r.name
            assert labels["app.kubernetes.io/instance"].startswith("dev-"), r.name


def test_stack_outputs_a_user_needs(dev_run):
    outputs = {k: resolve(v) for k, v in dev_run.outputs.items()}
    assert outputs["namespace"] == "ims"
    assert outputs["pcscfFqdn"] == "pcscf.ims.mnc001.mcc001.3gppnetwork.org"
    # The addresses are the ones Kubernetes gives the Services (here: what the mocks handed
    # back for each Service), not values the program makes up.
    assigned = {name: dev_run.mocks.outputs[f"{name}-service"]["spec"]["clusterIP"] for name in ("pcscf", "coredns")}
    assert outputs["pcscfAddress"] == assigned["pcscf"]
    assert outputs["imsDnsAddress"] == assigned["coredns"]


def test_builds_on_puts_the_pushed_digest_in_pod_specs(dev_run):
    images = {r.inputs["imageName"]: r for r in dev_run.mocks.of_type(IMAGE)}
    assert set(images) == {
        f"localhost:5001/ims-core/{name}:0.1.0" for name in ("kamailio", "rtpengine-alpine", "open5gs", "open5gs-provision")
    }
    for role in CSCF_ROLES:
        image = container(dev_run.mocks.named(f"{role}-deployment"))["image"]
        assert image.startswith("localhost:5001/ims-core/kamailio@sha256:"), image


def test_alpine_and_ubuntu_pick_different_dockerfiles_and_images():
    alpine = run_program({"rtpengineVariant": "alpine"})
    ubuntu = run_program({"rtpengineVariant": "ubuntu"})

    def rtpengine_build(run):
        (image,) = [r for r in run.mocks.of_type(IMAGE) if "rtpengine" in r.inputs["imageName"]]
        return image.inputs["build"]["dockerfile"], image.inputs["imageName"]

    a_file, a_name = rtpengine_build(alpine)
    u_file, u_name = rtpengine_build(ubuntu)
    assert a_file.endswith("dockerfiles/rtpengine/alpine/Dockerfile")
    assert u_file.endswith("dockerfiles/rtpengine/ubuntu/Dockerfile")
    assert a_name.endswith("/rtpengine-alpine:0.1.0") and u_name.endswith("/rtpengine-ubuntu:0.1.0")
    assert container(ubuntu.mocks.named("rtpengine-deployment"))["image"].startswith(
        "localhost:5001/ims-core/rtpengine-ubuntu@sha256:"
    )


def test_builds_off_creates_no_docker_resources_and_uses_references():
    run = run_program({"imageBuild": "false", "imagePush": "false", "imageRegistry": "registry.example.net/ims", "imageTag": "1.2.3"})
    assert run.error is None
    assert run.mocks.of_type(IMAGE) == []
    assert container(run.mocks.named("pcscf-deployment"))["image"] == "registry.example.net/ims/kamailio:1.2.3"
    assert container(run.mocks.named("rtpengine-deployment"))["image"] == "registry.example.net/ims/rtpengine-alpine:1.2.3"


def test_every_dockerfile_the_pipeline_names_exists():
    from components.images import IMAGES

    for spec in IMAGES.values():
        assert spec.dockerfile.is_file(), spec.dockerfile


def test_config_maps_are_autonamed_and_mounted_so_a_change_rolls_pods():
    before = run_program({})
    after = run_program({"imsDomain": "ims.example.net"})

    def cscf_config(run, role):
        cm = run.mocks.named(f"{role}-config")
        assert "name" not in cm.inputs["metadata"], "a fixed name would make the change an in-place update"
        volume = pod_spec(run.mocks.named(f"{role}-deployment"))["volumes"][0]
        (source,) = [s["configMap"]["name"] for s in volume["projected"]["sources"] if "configMap" in s]
        return source

    for role in CSCF_ROLES:
        assert cscf_config(before, role) != cscf_config(after, role), f"{role} pods would not roll"


def test_valkey_password_is_only_in_secrets():
    run = run_program({"valkeyPassword": "a-distinctive-password-42"})
    for cm in run.mocks.of_type(CONFIG_MAP):
        assert "a-distinctive-password-42" not in json.dumps(cm.inputs["data"]), cm.name
    secrets = [json.dumps(s.inputs.get("stringData")) for s in run.mocks.of_type(SECRET)]
    assert any("a-distinctive-password-42" in s for s in secrets)


def test_net_admin_only_on_the_pcscf_and_only_with_ipsec():
    def caps(run):
        return {
            r.inputs["metadata"]["name"]: container(r).get("securityContext", {}).get("capabilities", {}).get("add", [])
            for r in run.mocks.of_type(DEPLOYMENT)
        }

    with_ipsec = caps(run_program(IPSEC_ON))
    assert with_ipsec.pop("pcscf") == ["NET_ADMIN"]
    assert all(added == [] for added in with_ipsec.values()), with_ipsec
    assert all(added == [] for added in caps(run_program({"pcscfIpsec": "false"})).values())


def test_cscfs_without_privilege_run_as_non_root(dev_run):
    for role in ("icscf", "scscf"):
        security = container(dev_run.mocks.named(f"{role}-deployment"))["securityContext"]
        assert security["runAsNonRoot"] is True and security["capabilities"]["drop"] == ["ALL"]


def test_pcscf_service_exposes_ipsec_ports_only_when_ipsec_is_on():
    def ports(run):
        return {(p["name"], p["protocol"]) for p in run.mocks.named("pcscf-service").inputs["spec"]["ports"]}

    on, off = ports(run_program(IPSEC_ON)), ports(run_program({"pcscfIpsec": "false"}))
    assert {("sip-udp", "UDP"), ("sip-tcp", "TCP"), ("diameter", "TCP")} <= off
    assert not any(name.startswith("ipsec") for name, _ in off)
    assert {("ipsec-c0-udp", "UDP"), ("ipsec-s3-tcp", "TCP")} <= on


def test_fixed_addresses_become_cluster_ips():
    run = run_program({"pcscfAddress": "10.96.100.10", "corednsAddress": "10.96.100.53"})
    assert run.mocks.named("pcscf-service").inputs["spec"]["clusterIP"] == "10.96.100.10"
    assert resolve(run.outputs["imsDnsAddress"]) == "10.96.100.53"


def test_replicas_and_resources_follow_settings():
    run = run_program({"corednsReplicas": "3", "pcscfCpu": "1", "pcscfMemory": "1Gi"})
    assert run.mocks.named("coredns-deployment").inputs["spec"]["replicas"] == 3
    pcscf = run.mocks.named("pcscf-deployment")
    assert pcscf.inputs["spec"]["replicas"] == 1
    assert container(pcscf)["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}


def test_gm_is_open_only_into_the_pcscf(dev_run):
    policies = {r.name: r.inputs["spec"]["ingress"] for r in dev_run.mocks.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}
    sip_rule = policies["pcscf-ingress"][0]
    assert "from" not in sip_rule and {p["port"] for p in sip_rule["ports"]} >= {5060}
    for role in ("icscf", "scscf"):
        sources = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in policies[f"{role}-ingress"][0]["from"]}
        assert sources == set(CSCF_ROLES)


def test_rtpengine_uses_recreate(dev_run):
    assert dev_run.mocks.named("rtpengine-deployment").inputs["spec"]["strategy"] == {"type": "Recreate"}



def test_cscf_pods_resolve_through_the_ims_dns(dev_run):
    dns_ip = resolve(dev_run.outputs["imsDnsAddress"])
    for role in CSCF_ROLES:
        spec = pod_spec(dev_run.mocks.named(f"{role}-deployment"))
        assert spec["dnsPolicy"] == "None"
        assert spec["dnsConfig"]["nameservers"] == [dns_ip], role
        assert spec["dnsConfig"]["searches"][0] == "ims.svc.cluster.local"


def test_icscf_seeds_its_tables_into_its_valkey_database_before_starting(dev_run):
    spec = pod_spec(dev_run.mocks.named("icscf-deployment"))
    dns, seed = spec["initContainers"]
    assert dns["name"] == "wait-for-ims-dns" and seed["name"] == "seed-icscf-tables"
    script = resolve(seed["command"][-1])
    assert "valkey-cli --no-auth-warning -h valkey.ims.mnc001.mcc001.3gppnetwork.org -p 6379 ping" in script
    assert "-n 1 < /etc/kamailio/seed/icscf-tables.valkey" in script
    (auth,) = seed["env"]
    valkey_secret = dev_run.mocks.named("valkey-auth").inputs["metadata"]
    assert auth["valueFrom"]["secretKeyRef"]["name"].startswith("valkey-auth-")
    assert "name" not in valkey_secret  # autonamed: a new password rolls the seeding pod too
    config = dev_run.mocks.named("icscf-config").inputs["data"]
    rows = config["seed__icscf-tables.valkey"].splitlines()
    assert rows[0].startswith('"HSET" "s_cscf:entry::1"') and '"sip:scscf.ims.mnc001.mcc001.3gppnetwork.org:5060"' in rows[0]
    _, wait, relay = pod_spec(dev_run.mocks.named("pcscf-deployment"))["initContainers"]
    assert wait["name"] == "wait-for-valkey"
    script = resolve(wait["command"][-1])
    assert "valkey-cli --no-auth-warning -h valkey." in script and " -n " not in script
    # Then the P-CSCF's media relay, at the address its config sends NG commands to.
    assert relay["name"] == "wait-for-rtpengine"
    defines = dev_run.mocks.named("pcscf-config").inputs["data"]["defines.cfg"]
    host = re.search(r'RTPENGINE_SOCK "udp:([^:]+):2223"', defines).group(1)
    assert f"rtpengine-ng-ping {host} 2223" in relay["command"][-1]
    assert "rtpengine-alpine" in resolve(relay["image"])
    # The S-CSCF uses no Valkey: it waits only for the IMS DNS.
    (only,) = pod_spec(dev_run.mocks.named("scscf-deployment"))["initContainers"]
    assert only["name"] == "wait-for-ims-dns"


def test_cscf_config_files_are_readable_by_the_non_root_user(dev_run):
    for role in CSCF_ROLES:
        spec = pod_spec(dev_run.mocks.named(f"{role}-deployment"))
        assert spec["securityContext"]["fsGroup"] == 65532
        assert spec["volumes"][0]["projected"]["defaultMode"] == 0o440


def test_ipsec_pcscf_runs_as_root_with_only_net_admin():
    security = container(run_program(IPSEC_ON).mocks.named("pcscf-deployment"))["securityContext"]
    assert security["runAsUser"] == 0 and security["runAsNonRoot"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert security["allowPrivilegeEscalation"] is False
    plain = container(run_program({"pcscfIpsec": "false"}).mocks.named("pcscf-deployment"))["securityContext"]
    assert plain["runAsNonRoot"] is True and "add" not in plain["capabilities"]
