"""IMS DNS and Valkey under mocks: zone content, addresses the zone follows, who may reach Valkey,
where the password lives, and the DNS mistakes a user can make in stack config."""

from __future__ import annotations

import json

import dns.zone
import pytest
from pulumi.runtime import rpc

from components.interfaces import valkey_clients
from components.render import coredns as render_coredns
from components.render import valkey as render_valkey
from components.settings import CSCF_ROLES, VALKEY_DATABASES, from_mapping, load_schema
from tests.unit.conftest import BASE_CONFIG, container, pod_spec, resolve, run_program

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
IMS = "ims.mnc001.mcc001.3gppnetwork.org"
EPC = "epc.mnc001.mcc001.3gppnetwork.org"
IMS_NFS = ("pcscf", "icscf", "scscf", "valkey", "coredns", "rtpengine")


def zones(run) -> dict[str, dns.zone.Zone]:
    """The zone files of the IMS DNS ConfigMap, parsed by dnspython (an independent parser)."""
    data = run.mocks.named("coredns-zones").inputs["data"]
    return {
        domain: dns.zone.from_text(data[f"db.{domain}"], origin=domain, relativize=False)
        for domain in (IMS, EPC)
        if f"db.{domain}" in data
    }


def records(zone: dns.zone.Zone, name: str, rdtype: str) -> set[str]:
    rdataset = zone.get_rdataset(f"{name}.", rdtype)
    return {r.to_text() for r in rdataset} if rdataset else set()


def serial(zone: dns.zone.Zone) -> int:
    return zone.get_rdataset(zone.origin, "SOA")[0].serial


# --- zone content ---------------------------------------------------------------------------


def test_dev_zone_has_an_a_record_for_every_nf_at_its_assigned_cluster_ip(dev_run):
    # No fixed addresses in the dev stack: every A record comes from a Service's ClusterIP Output.
    ims = zones(dev_run)[IMS]
    addresses = {nf: records(ims, f"{nf}.{IMS}", "A") for nf in IMS_NFS}
    assert all(len(a) == 1 for a in addresses.values()), addresses
    assert len(set().union(*addresses.values())) == len(IMS_NFS), "two NFs share an address"
    assert addresses["pcscf"] == {resolve(dev_run.outputs["pcscfAddress"])}
    assert addresses["coredns"] == records(ims, f"ns.{IMS}", "A") == {resolve(dev_run.outputs["imsDnsAddress"])}


FIXED = {f"{nf}Address": f"10.96.100.{i}" for i, nf in enumerate(IMS_NFS, start=10)}


def test_zone_a_records_are_the_service_cluster_ips_when_addresses_are_fixed():
    run = run_program(FIXED)
    ims = zones(run)[IMS]
    services = {r.inputs["metadata"]["name"]: r.inputs["spec"].get("clusterIP") for r in run.mocks.of_type(SERVICE)}
    for nf in IMS_NFS:
        assert records(ims, f"{nf}.{IMS}", "A") == {services[nf]} == {FIXED[f"{nf}Address"]}, nf


def test_dev_zone_resolves_the_domain_by_naptr_then_srv_to_the_icscf(dev_run):
    ims = zones(dev_run)[IMS]
    naptr = sorted(ims.get_rdataset(f"{IMS}.", "NAPTR"), key=lambda r: r.order)
    assert [(r.flags, r.service, r.replacement.to_text()) for r in naptr] == [
        (b"s", b"SIP+D2U", f"_sip._udp.{IMS}."),
        (b"s", b"SIP+D2T", f"_sip._tcp.{IMS}."),
    ]
    for transport in ("udp", "tcp"):
        assert records(ims, f"_sip._{transport}.{IMS}", "SRV") == {f"0 0 5060 icscf.{IMS}."}
        for role in CSCF_ROLES:
            assert records(ims, f"_sip._{transport}.{role}.{IMS}", "SRV") == {f"0 0 5060 {role}.{IMS}."}


def test_epc_zone_names_an_external_hss_and_pcrf_only_when_their_address_is_known():
    assert records(zones(run_program({"open5gs": False}))[EPC], f"hss.{EPC}", "A") == set()
    run = run_program({"open5gs": False, "hssAddress": "10.0.2.10", "pcrfAddress": "10.0.2.11"})
    epc = zones(run)[EPC]
    assert records(epc, f"hss.{EPC}", "A") == {"10.0.2.10"}
    assert records(epc, f"pcrf.{EPC}", "A") == {"10.0.2.11"}
    # The EPC NFs live in the EPC zone only.
    assert records(zones(run)[IMS], f"hss.{IMS}", "A") == set()


def test_epc_zone_names_the_open5gs_services_with_no_address_typed(dev_run):
    epc = zones(dev_run)[EPC]
    published = {nf: records(epc, f"{nf}.{EPC}", "A") for nf in ("hss", "pcrf", "pgw")}
    # The mocks' ClusterIPs (10.96.x.y), one per Service: nothing typed by hand.
    assert all(len(a) == 1 and next(iter(a)).startswith("10.96.") for a in published.values()), published
    assert len(set().union(*published.values())) == 3


def test_corefile_serves_both_zones_and_forwards_the_rest_to_the_cluster_dns(dev_run):
    corefile = dev_run.mocks.named("coredns-zones").inputs["data"]["Corefile"]
    assert f"{IMS}:1053 {{" in corefile and f"{EPC}:1053 {{" in corefile
    assert f"file /etc/coredns/db.{IMS}" in corefile
    assert "forward . /etc/resolv.conf" in corefile
    assert "ready :8181" in corefile and "health :8080" in corefile


def test_dns_service_maps_53_to_the_unprivileged_container_port_and_pods_run_as_non_root(dev_run):
    ports = dev_run.mocks.named("coredns-service").inputs["spec"]["ports"]
    assert {(p["port"], p["targetPort"], p["protocol"]) for p in ports} == {(53, 1053, "UDP"), (53, 1053, "TCP")}
    c = container(dev_run.mocks.named("coredns-deployment"))
    assert c["image"] == load_schema()["corednsImage"]["default"]
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8181}


def test_dns_policy_admits_dns_from_anywhere_and_nothing_else(dev_run):
    (rule,) = dev_run.mocks.named("coredns-ingress").inputs["spec"]["ingress"]
    assert "from" not in rule
    assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {(1053, "UDP"), (1053, "TCP")}


# --- the zone follows addresses ---------------------------------------------------------------


def _mounted_zone_config(run) -> str:
    (volume,) = pod_spec(run.mocks.named("coredns-deployment"))["volumes"]
    return volume["configMap"]["name"]


def test_a_fixed_address_change_updates_the_zone_its_serial_and_rolls_coredns():
    before = run_program({"pcscfAddress": "10.96.100.10"})
    after = run_program({"pcscfAddress": "10.96.100.11"})
    assert records(zones(before)[IMS], f"pcscf.{IMS}", "A") == {"10.96.100.10"}
    assert records(zones(after)[IMS], f"pcscf.{IMS}", "A") == {"10.96.100.11"}
    assert serial(zones(before)[IMS]) != serial(zones(after)[IMS])
    # The EPC zone did not change, so neither did its serial.
    assert serial(zones(before)[EPC]) == serial(zones(after)[EPC])
    assert _mounted_zone_config(before) != _mounted_zone_config(after), "CoreDNS pods would keep the old zone"


def test_the_same_config_renders_byte_identical_zones_so_a_preview_is_clean():
    # Fixed addresses: the mocks hand out ClusterIPs in registration order, which varies run to run.
    first, second = run_program(FIXED), run_program(FIXED)
    assert first.mocks.named("coredns-zones").inputs["data"] == second.mocks.named("coredns-zones").inputs["data"]


def test_serial_changes_with_any_record_and_stays_within_31_bits():
    a = [render_coredns.Record(f"pcscf.{IMS}", "A", "10.0.0.1")]
    b = [render_coredns.Record(f"pcscf.{IMS}", "A", "10.0.0.2")]
    assert render_coredns.serial_of(a) == render_coredns.serial_of(list(a))
    assert render_coredns.serial_of(a) != render_coredns.serial_of(b)
    assert 0 < render_coredns.serial_of(a) < 2**31


# --- Valkey -----------------------------------------------------------------------------------


def test_valkey_admits_only_its_clients_on_its_port(dev_run):
    (rule,) = dev_run.mocks.named("valkey-ingress").inputs["spec"]["ingress"]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    peers = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    # The P- and I-CSCF; the S-CSCF keeps its contacts in memory and never opens Valkey.
    assert sorted(p["app.kubernetes.io/name"] for p in peers) == ["icscf", "pcscf"]
    assert all(p["app.kubernetes.io/instance"] == f"dev-{p['app.kubernetes.io/name']}" for p in peers)
    assert all(set(peer) == {"podSelector"} for peer in rule["from"]), "a namespace/ipBlock peer would widen it"


def test_valkey_password_reaches_the_pod_only_through_a_secret():
    password = "a-distinctive-valkey-password-7"
    run = run_program({"valkeyPassword": password})
    config = run.mocks.named("valkey-config")
    assert password not in json.dumps(config.inputs["data"])
    assert f"include {render_valkey.SECRET_DIR}/auth.conf" in config.inputs["data"]["valkey.conf"]
    string_data = run.mocks.named("valkey-auth").inputs["stringData"]
    # Marked secret, so state and `pulumi preview` show [secret], never the value.
    assert string_data[rpc._special_sig_key] == rpc._special_secret_sig
    assert string_data["value"] == {"auth.conf": f"requirepass {password}\n", "password": password}
    statefulset = run.mocks.named("valkey-statefulset")
    assert password not in json.dumps(statefulset.inputs)
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    secret_name = volumes["auth"]["secret"]["secretName"]
    assert secret_name.startswith("valkey-auth-")
    assert volumes["config"]["configMap"]["name"].startswith("valkey-config-")
    env = {e["name"]: e for e in container(statefulset)["env"]}
    for variable in ("VALKEYCLI_AUTH", "REDISCLI_AUTH"):
        assert "value" not in env[variable]
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": "password"}


def test_valkey_statefulset_persists_with_aof_on_a_claim_of_the_configured_size():
    run = run_program({"valkeyStorage": "5Gi", "valkeyMemory": "512Mi", "valkeyImage": "valkey/valkey:8.1.4-alpine"})
    statefulset = run.mocks.named("valkey-statefulset")
    assert "volumeClaimTemplates" not in statefulset.inputs["spec"], "a template cannot grow: see valkey.py"
    claim = run.mocks.named("valkey-data").inputs
    assert claim["metadata"]["name"] == "data-valkey-0", "the name the template gave it: existing data is kept"
    assert claim["spec"]["resources"]["requests"] == {"storage": "5Gi"}
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "data-valkey-0"}
    c = container(statefulset)
    assert c["image"] == "valkey/valkey:8.1.4-alpine"
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    assert c["resources"]["limits"] == {"memory": "512Mi"}
    assert "ping" in " ".join(c["readinessProbe"]["exec"]["command"])
    conf = run.mocks.named("valkey-config").inputs["data"]["valkey.conf"].splitlines()
    assert "appendonly yes" in conf and "appendfsync everysec" in conf and "dir /data" in conf
    # Half the limit, so an AOF rewrite's fork fits; full means refused writes, not evicted state.
    assert f"maxmemory {256 * 2**20}" in conf and "maxmemory-policy noeviction" in conf


def test_every_valkey_client_has_its_own_database():
    assert len(set(VALKEY_DATABASES.values())) == len(VALKEY_DATABASES)
    assert set(VALKEY_DATABASES) == set(valkey_clients()), "a database for each client of the table, no other"
    conf = render_valkey.render(from_mapping(BASE_CONFIG, stack="unit"))["valkey.conf"]
    databases = int(next(line.split()[1] for line in conf.splitlines() if line.startswith("databases ")))
    assert max(VALKEY_DATABASES.values()) < databases


@pytest.mark.parametrize(
    ("quantity", "expected"), [("256Mi", 256 * 2**20), ("1Gi", 2**30), ("500M", 500 * 10**6), ("1024", 1024)]
)
def test_memory_quantities(quantity, expected):
    assert render_valkey.quantity_bytes(quantity) == expected


# --- bad input ----------------------------------------------------------------------------------

INVALID = [
    ({"pcscfAddress": "10.96.0"}, "pcscfAddress = '10.96.0': must be an IPv4 address"),
    ({"corednsAddress": "0.0.0.0"}, "corednsAddress = '0.0.0.0': must be a unicast IPv4 address"),
    ({"hssAddress": "224.0.0.5"}, "hssAddress = '224.0.0.5': must be a unicast IPv4 address"),
    ({"pcrfAddress": "fd00::1"}, "pcrfAddress = 'fd00::1': must be an IPv4 address"),
    ({"imsDomain": "ims.example.net."}, "imsDomain = 'ims.example.net.': must be a lowercase DNS name"),
    ({"imsDomain": "-ims.example.net"}, "imsDomain = '-ims.example.net': must be a lowercase DNS name"),
    ({"epcDomain": "epc_core.example.net"}, "epcDomain = 'epc_core.example.net': must be a lowercase DNS name"),
    ({"epcDomain": " "}, "epcDomain = ' ': must be a lowercase DNS name"),
    (
        {"imsDomain": "ims.example.net", "epcDomain": "pcscf.ims.example.net"},
        "epcDomain = 'pcscf.ims.example.net': is the FQDN of pcscf in imsDomain 'ims.example.net'",
    ),
    (
        {"epcDomain": "epc.example.net", "imsDomain": "hss.epc.example.net"},
        "imsDomain = 'hss.epc.example.net': is the FQDN of hss in epcDomain 'epc.example.net'",
    ),
    (
        {"valkeyAddress": "10.96.0.50", "corednsAddress": "10.96.0.50"},
        "corednsAddress = '10.96.0.50': clashes with valkeyAddress",
    ),
    (
        {"pcscfAddress": "10.0.2.10", "hssAddress": "10.0.2.10"},
        "hssAddress = '10.0.2.10': clashes with pcscfAddress",
    ),
]


@pytest.mark.parametrize(("config", "message"), INVALID, ids=[m.split(":")[0] for _, m in INVALID])
def test_bad_dns_input_names_the_key_and_creates_nothing(config, message):
    run = run_program(config)
    assert run.error is not None, f"{config} was accepted"
    assert message in str(run.error)
    assert run.resources == []


def test_nested_domains_are_fine_when_no_name_is_hidden():
    run = run_program({"imsDomain": "ims.example.net", "epcDomain": "epc.ims.example.net"})
    assert run.error is None, run.error
    data = run.mocks.named("coredns-zones").inputs["data"]
    assert {"db.ims.example.net", "db.epc.ims.example.net", "Corefile"} == set(data)


def test_loopback_addresses_are_allowed_for_the_live_profile():
    s = from_mapping({**BASE_CONFIG, "corednsAddress": "127.0.0.53", "pcscfAddress": "127.0.0.11"}, stack="unit")
    assert s.nf("coredns").address == "127.0.0.53"
