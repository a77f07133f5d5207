"""open5gs HSS, PCRF, PGW, MongoDB and subscribers: validation, rendered files, consistency
between the components on both sides of every interface, and the objects a user would see."""

from __future__ import annotations

import importlib.util
import json
import re
import xml.etree.ElementTree as ET

import bson
import pytest
import yaml
from bson.int64 import Int64

from components.render import kamailio as render_kamailio
from components.render import open5gs as render_open5gs
from components.settings import SettingsError
from tests.profiles import stack_settings
from tests.unit.conftest import container, pod_spec, run_program

K = "465b5ce8b199b49faa5f0a2ee238a6bc"
OPC = "cd63cb71954a9f4e48a5994e37a02baf"
ALICE = {"imsi": "001010000000001", "msisdn": "10001", "k": K, "opc": OPC}
BOB = {"imsi": "001010000000002", "msisdn": "10002", "k": K, "opc": OPC, "apns": ["ims"], "ambr": {"uplink": "100 Mbps"}}


def settings(**config):
    return stack_settings("unit", **config)


# --- subscribers setting ----------------------------------------------------------------


def test_bad_subscribers_are_all_reported_with_key_value_and_what_is_allowed_and_never_the_secrets():
    bad = [
        {"imsi": "00101abc", "msisdn": "10001", "k": "secret-not-hex-secret-not-hex-xx", "opc": OPC},
        {"imsi": "310260000000001", "k": K, "opc": OPC[:30], "apns": ["ims", "wap"], "colour": "red"},
        {"imsi": "001010000000003", "msisdn": "10001", "k": K, "opc": OPC, "amf": "80000"},
    ]
    with pytest.raises(SettingsError) as err:
        settings(subscribers=bad)
    text = str(err.value)
    for expected in (
        "subscribers[0].imsi = '00101abc': must be 14 or 15 digits",
        "subscribers[0].k = <secret of 32 characters>: must be 32 hexadecimal digits",
        "subscribers[1].imsi = '310260000000001': must start with this network's MCC+MNC 00101",
        "subscribers[1].msisdn = '': required",
        "subscribers[1].opc = <secret of 30 characters>",
        "subscribers[1].apns = ['ims', 'wap']",
        "subscribers[1].colour: unknown field",
        "subscribers[2].amf = '80000': must be 4 hexadecimal digits",
        "subscribers[2].msisdn = '10001': already used by subscribers[0]",
    ):
        assert expected in text, (expected, text)
    assert "secret-not-hex" not in text and OPC[:30] not in text and K not in text


def test_duplicate_imsi_and_a_three_digit_mnc_prefix():
    with pytest.raises(SettingsError, match=r"subscribers\[1\]\.imsi = '001010000000001': already used by subscribers\[0\]"):
        settings(subscribers=[ALICE, {**BOB, "imsi": ALICE["imsi"]}])
    s = settings(mnc="001", subscribers=[{**ALICE, "imsi": "001001000000001"}])
    assert s.open5gs.subscribers[0].imsi == "001001000000001"


def test_subscribers_without_open5gs_are_refused_and_secrets_stay_out_of_repr():
    with pytest.raises(SettingsError, match="subscribers: declared with open5gs = false"):
        settings(open5gs=False, subscribers=[ALICE])
    s = settings(subscribers=[ALICE])
    assert K not in repr(s) and OPC not in repr(s) and K not in repr(s.open5gs.subscribers[0])


def test_mongodb_password_and_ue_pools_are_validated():
    with pytest.raises(SettingsError) as err:
        settings(mongodbPassword="short", ueInternetPool="10.45.0.0/16", ueImsPool="10.45.128.0/17", ueMtu=9000)
    text = str(err.value)
    assert "mongodbPassword = <secret of 5 characters>: must be at least 16 characters" in text
    assert "the UE pools overlap" in text and "ueMtu = 9000: must be between 1280" in text


# --- rendered files and their consistency ----------------------------------------------------


def _cdp_peer(settings, role):
    root = ET.fromstring(render_kamailio.diameter_xml(settings, role))
    peer = root.find("Peer")
    return root, peer


def _connect_peers(conf: str) -> dict[str, str | None]:
    peers = {}
    for m in re.finditer(r'ConnectPeer = "([^"]+)" \{([^}]*)\}', conf):
        to = re.search(r'ConnectTo = "([^"]+)"', m.group(2))
        port = re.search(r"Port = (\d+)", m.group(2))
        assert port and int(port.group(1)) == render_kamailio.DIAMETER_PORT
        peers[m.group(1)] = to.group(1) if to else None
    return peers


@pytest.mark.parametrize("config", [{}, {"pcscfRx": False}, {"mnc": "260", "mcc": "310", "imsDomain": "ims.example.net"}])
def test_diameter_identities_realms_ports_and_applications_agree_on_both_sides(config):
    s = settings(**config)
    for nf, roles in (("hss", ("icscf", "scscf")), ("pcrf", ("pcscf",))):
        conf = render_open5gs.freediameter_conf(s, nf)
        identity = re.search(r'Identity = "([^"]+)"', conf).group(1)
        realm = re.search(r'Realm = "([^"]+)"', conf).group(1)
        assert re.search(r"^Port = (\d+);", conf, re.M).group(1) == str(render_kamailio.DIAMETER_PORT)
        peers = _connect_peers(conf)
        for role in roles:
            if role == "pcscf" and not s.pcscf_rx:
                assert s.nf("pcscf").fqdn not in peers
                assert render_kamailio.diameter_xml(s, role) is None
                continue
            root, peer = _cdp_peer(s, role)
            # The CSCF's Origin-Host is what freeDiameter admits; the CSCF's peer is the NF's identity.
            assert root.get("FQDN") in peers
            assert (peer.get("FQDN"), peer.get("Realm"), peer.get("port")) == (identity, realm, str(render_open5gs.DIAMETER_PORT))
            app = root.find("Auth")
            expected = render_open5gs.CX_APPLICATION if nf == "hss" else render_open5gs.RX_APPLICATION
            assert (int(app.get("id")), int(app.get("vendor"))) == (expected, render_open5gs.VENDOR_3GPP)
            assert dict(render_open5gs.DIAMETER_PEERS[nf])[role] == expected
    # Gx: the SMF (PGW) and the PCRF name each other.
    smf = render_open5gs.freediameter_conf(s, "smf")
    pcrf = render_open5gs.freediameter_conf(s, "pcrf")
    assert re.search(r'Identity = "([^"]+)"', smf).group(1) == s.nf("pgw").fqdn in _connect_peers(pcrf)
    assert s.nf("pcrf").fqdn in _connect_peers(smf)
    assert dict(render_open5gs.DIAMETER_PEERS["smf"])["pcrf"] == render_open5gs.GX_APPLICATION == 16777238
    assert render_kamailio.defines(s, "icscf").count(f"!HSS_REALM!{s.nf('hss').realm}!") == 1


def test_connect_to_only_for_fixed_addresses_and_every_conf_is_tcp_only_without_tls():
    s = settings(icscfAddress="10.96.0.12")
    peers = _connect_peers(render_open5gs.freediameter_conf(s, "hss"))
    assert peers == {s.nf("icscf").fqdn: "10.96.0.12", s.nf("scscf").fqdn: None}
    for nf in ("hss", "pcrf", "smf"):
        conf = render_open5gs.freediameter_conf(s, nf)
        assert "SecPort = 0;" in conf and "No_SCTP;" in conf and "ListenOn" not in conf
        assert conf.count("No_TLS;") == conf.count("ConnectPeer")


def test_smf_hands_ues_the_ims_dns_and_pcscf_and_its_pools_match_the_upf():
    s = settings(ueMtu=1380)
    files = render_open5gs.render(s, {"coredns": "10.96.0.53", "pcscf": "10.96.0.11"})["pgw"]
    smf = yaml.safe_load(files["smf.yaml"])["smf"]
    upf = yaml.safe_load(files["upf.yaml"])["upf"]
    assert smf["dns"] == ["10.96.0.53"] and smf["p-cscf"] == ["10.96.0.11"] and smf["mtu"] == 1380
    assert {x["dnn"] for x in smf["session"]} == {"internet", "ims"}
    assert [(x["subnet"], x["gateway"], x["dnn"]) for x in smf["session"]] == [
        (x["subnet"], x["gateway"], x["dnn"]) for x in upf["session"]
    ]
    assert smf["pfcp"]["client"]["upf"][0]["address"] == upf["pfcp"]["server"][0]["address"]
    assert upf["pfcp"]["client"]["smf"][0]["address"] == smf["pfcp"]["server"][0]["address"]
    script = files["upf-tun.sh"]
    for session in upf["session"]:
        prefix = session["subnet"].split("/")[1]
        assert f"ip addr replace {session['gateway']}/{prefix} dev {session['dev']}" in script
        assert f"ip tuntap add name {session['dev']} mode tun user {render_open5gs.UPF_UID}" in script
    assert "-s 10.45.0.0/16 ! -o ogstun -j MASQUERADE" in script
    assert "dev ogstun2" in script and "-s 10.46.0.0/16" not in script  # ims: routed, never NATed
    for name in ("hss.yaml", "pcrf.yaml"):
        text = render_open5gs.render(s, {"coredns": "", "pcscf": ""})[name[:-5]][name]
        assert "db_uri" not in text and "mongodb://" not in text  # the URI with its password comes from DB_URI


def test_subscriber_documents_follow_open5gs_2_7_schema_and_types():
    spec = importlib.util.spec_from_file_location("provision", render_open5gs.SHIPPED / "provision.py")
    provision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(provision)
    s = settings(subscribers=[ALICE, BOB])
    declared = json.loads(render_open5gs.subscribers_json(s))
    doc = provision.document(declared["subscribers"][1], declared["stack"])
    doc["security"]["sqn"] = Int64(provision.INITIAL_SQN)
    raw = bson.decode(bson.encode(doc), codec_options=bson.CodecOptions(type_registry=None))
    assert raw["msisdn"] == ["10002"] and raw["imsi"] == "001010000000002"
    assert type(raw["security"]["sqn"]) is Int64
    (session,) = raw["slice"][0]["session"]
    assert session["name"] == "ims" and session["qos"]["index"] == 5
    assert raw["ambr"]["uplink"] == {"value": 100, "unit": 2}
    # Every other number is a BSON int32 (type 0x10): find them in the raw encoding.
    encoded = bson.encode(doc)
    assert encoded.count(b"\x12sqn\x00") == 1  # 0x12 = int64, only the SQN
    assert b"\x12" + b"schema_version" not in encoded and b"\x10schema_version\x00" in encoded


# --- the stack's objects -----------------------------------------------------------------


def _run(**config):
    run = run_program(config)
    assert run.error is None, run.error
    return run


def test_k_and_opc_are_only_in_the_subscriber_secret_never_in_a_configmap():
    run = _run(subscribers=[ALICE])
    for cm in run.mocks.of_type("kubernetes:core/v1:ConfigMap"):
        assert K not in json.dumps(cm.inputs) and OPC not in json.dumps(cm.inputs), cm.name
    (secret,) = [r for r in run.mocks.of_type("kubernetes:core/v1:Secret") if r.name == "subscriber-provisioning-subscribers"]
    data = secret.inputs["stringData"]
    assert K in data.get("value", data)["subscribers.json"]  # the mocks show a secret as {sig, value}
    job = run.mocks.named("subscriber-provisioning-job")
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes["subscribers"]["secret"]["secretName"].startswith("subscriber-provisioning-subscribers-")
    assert "value" in secret.inputs["stringData"], "not marked secret"


def test_adding_a_subscriber_changes_only_the_subscriber_secret_and_the_job():
    one, two = _run(subscribers=[ALICE]), _run(subscribers=[ALICE, BOB])

    def state(run):
        return {r.name: json.dumps(r.inputs, sort_keys=True, default=str) for r in run.resources}

    a, b = state(one), state(two)
    assert a.keys() == b.keys()
    changed = {name for name in a if a[name] != b[name]}
    assert changed == {"subscriber-provisioning-subscribers", "subscriber-provisioning-job"}, changed


def test_hss_waits_for_its_database_and_reads_the_uri_from_a_secret():
    run = _run()
    hss = run.mocks.named("hss-deployment")
    (wait,) = pod_spec(hss)["initContainers"]
    assert "nc -z" in wait["command"][-1] and "mongodb." in wait["command"][-1]
    (db_uri,) = container(hss)["env"]
    assert db_uri["name"] == "DB_URI" and "secretKeyRef" in db_uri["valueFrom"]
    assert pod_spec(hss)["dnsPolicy"] == "None"  # freeDiameter resolves the CSCFs' identities via the IMS DNS


def test_pgw_privileges_net_admin_only_in_its_init_container_and_none_in_the_daemons():
    run = _run()
    spec = pod_spec(run.mocks.named("pgw-deployment"))
    (setup,) = spec["initContainers"]
    assert setup["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert setup["securityContext"]["allowPrivilegeEscalation"] is False
    for c in spec["containers"]:
        assert c["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in c["securityContext"]


def test_mongodb_admits_only_its_clients_and_diameter_only_the_peers():
    run = _run()

    def sources(name):
        policy = run.mocks.named(name)
        return [
            {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in rule.get("from", [])}
            for rule in policy.inputs["spec"]["ingress"]
        ]

    assert sources("mongodb-ingress") == [{"hss", "pcrf", "subscriber-provisioning"}]
    assert sources("hss-ingress") == [{"icscf", "scscf"}]
    assert sources("pcrf-ingress") == [{"pcscf", "pgw"}]
    assert set() in sources("pgw-ingress") and {"pcrf"} in sources("pgw-ingress")
    # The CSCFs admit Diameter from the open5gs pods (RTR/PPR from the HSS, RAR/ASR from the PCRF).
    assert any({"hss"} == s for s in sources("icscf-ingress"))
    assert any({"pcrf"} == s for s in sources("pcscf-ingress"))


def test_subscribers_in_plain_text_stack_config_are_refused():
    from components.settings import from_mapping

    values = {"valkeyPassword": "x" * 16, "mongodbPassword": "y" * 16, "subscribers": [ALICE]}
    with pytest.raises(SettingsError, match=r"subscribers: K and OPc are stored in plain text"):
        from_mapping(values, stack="unit", secret_keys=frozenset({"valkeyPassword", "mongodbPassword"}))
    every = frozenset({"valkeyPassword", "mongodbPassword", "subscribers"})
    assert from_mapping(values, stack="unit", secret_keys=every).open5gs.subscribers


def test_the_dev_stack_runs_with_rx_on_and_its_peers_in_the_stack(dev_run):
    pcscf = dev_run.mocks.named("pcscf-config").inputs["data"]
    assert "#!define WITH_RX" in pcscf["defines.cfg"]
    assert 'FQDN="pcrf.epc.mnc001.mcc001.3gppnetwork.org"' in pcscf["diameter.xml"]
    hss = dev_run.mocks.named("hss-config").inputs["data"]["freeDiameter__hss.conf"]
    pcrf = dev_run.mocks.named("pcrf-config").inputs["data"]["freeDiameter__pcrf.conf"]
    assert set(_connect_peers(hss)) == {"icscf.ims.mnc001.mcc001.3gppnetwork.org", "scscf.ims.mnc001.mcc001.3gppnetwork.org"}
    assert set(_connect_peers(pcrf)) == {"pcscf.ims.mnc001.mcc001.3gppnetwork.org", "pgw.epc.mnc001.mcc001.3gppnetwork.org"}


def test_the_pgw_hands_ues_the_stacks_own_pcscf_and_ims_dns_addresses(dev_run):
    from tests.unit.conftest import resolve

    data = resolve(dev_run.mocks.named("pgw-config").inputs["data"])
    smf = yaml.safe_load(data["smf.yaml"])["smf"]
    assert smf["p-cscf"] == [resolve(dev_run.outputs["pcscfAddress"])]
    assert smf["dns"] == [resolve(dev_run.outputs["imsDnsAddress"])]


def test_without_a_configured_mongodb_password_the_stack_generates_one(dev_run):
    from tests.unit.conftest import GENERATED_PASSWORD

    assert dev_run.mocks.named("mongodb-password").inputs["length"] >= 16
    auth = dev_run.mocks.named("mongodb-auth").inputs["stringData"]["value"]
    assert auth["password"] == GENERATED_PASSWORD
    uri = dev_run.mocks.named("mongodb-uri").inputs["stringData"]["value"]["uri"]
    assert f":{GENERATED_PASSWORD}@" in uri
    configured = run_program({"mongodbPassword": "a-configured-mongodb-99"})
    assert not [r for r in configured.resources if r.name == "mongodb-password"]
