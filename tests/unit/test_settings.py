"""Settings: schema defaults, derived names, and every bad value reported before anything exists."""

from __future__ import annotations

import pytest

from components.settings import SettingsError, from_mapping, load_schema
from tests.unit.conftest import BASE_CONFIG, run_program

SCHEMA = load_schema()


def settings(**config):
    return from_mapping({**BASE_CONFIG, **config}, stack="unit")


def test_every_key_in_pulumi_yaml_is_typed_and_described():
    for key, spec in SCHEMA.items():
        # The types Pulumi's project schema allows (sdk/go/common/workspace/project.json).
        assert spec.get("type") in ("string", "integer", "boolean", "array", "object"), key
        assert spec.get("description"), f"{key} has no description"
        assert "default" in spec or spec.get("secret"), f"{key} has neither a default nor is a required secret"


def test_defaults_come_from_the_schema_not_from_code():
    s = settings()
    assert s.namespace == SCHEMA["namespace"]["default"]
    assert s.rtpengine_variant == SCHEMA["rtpengineVariant"]["default"] == "alpine"
    assert s.nf("pcscf").replicas == SCHEMA["pcscfReplicas"]["default"]
    assert s.images.tag == SCHEMA["imageTag"]["default"]


def test_domains_derive_from_mcc_and_zero_padded_mnc():
    s = settings(mcc="310", mnc="26")
    assert s.mnc == "026"
    assert s.ims_domain == "ims.mnc026.mcc310.3gppnetwork.org"
    assert s.epc_domain == "epc.mnc026.mcc310.3gppnetwork.org"


def test_three_digit_mnc_is_kept():
    assert settings(mcc="310", mnc="410").ims_domain == "ims.mnc410.mcc310.3gppnetwork.org"


def test_nf_fqdns_and_diameter_realms():
    s = settings(imsDomain="ims.example.net")
    assert s.nf("pcscf").fqdn == "pcscf.ims.example.net"
    assert s.nf("scscf").realm == "ims.example.net"
    assert s.nf("hss").fqdn == "hss.epc.mnc001.mcc001.3gppnetwork.org"
    assert s.nf("pcrf").realm == "epc.mnc001.mcc001.3gppnetwork.org"


def test_config_strings_from_the_cli_are_typed():
    s = settings(corednsReplicas="3", pcscfIpsec="false", imageBuild="false", imagePush="false")
    assert s.nf("coredns").replicas == 3
    assert s.pcscf_ipsec is False
    assert s.images.build is False


def test_settings_are_immutable():
    s = settings()
    with pytest.raises(AttributeError):
        s.mcc = "002"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.nfs["pcscf"] = None  # type: ignore[index]


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as info:
        settings(mcc="1", mnc="x", rtpengineVariant="debian", pcscfReplicas="0")
    keys = {e.split(" ", 1)[0] for e in info.value.errors}
    assert keys == {"mcc", "mnc", "rtpengineVariant", "pcscfReplicas"}
    assert len(info.value.errors) == 4


# (config, the words the message must contain). Each is a distinct mistake a user makes.
INVALID = [
    ({"mcc": "01"}, "mcc = '01': must be exactly 3 digits"),
    ({"mcc": "abc"}, "mcc = 'abc': must be exactly 3 digits"),
    ({"mnc": "1"}, "mnc = '1': must be 2 or 3 digits"),
    ({"mnc": "0001"}, "mnc = '0001': must be 2 or 3 digits"),
    ({"namespace": "IMS_Core"}, "namespace = 'IMS_Core': must be a DNS-1123 label"),
    ({"namespace": ""}, "namespace = '': must be a DNS-1123 label"),
    ({"imsDomain": "ims..example.net"}, "imsDomain = 'ims..example.net': must be a lowercase DNS name"),
    ({"imsDomain": "localhost"}, "imsDomain = 'localhost': must be a lowercase DNS name of two or more labels"),
    ({"epcDomain": "EPC.Example.net"}, "epcDomain = 'EPC.Example.net': must be a lowercase DNS name"),
    ({"imsDomain": "core.example.net", "epcDomain": "core.example.net"}, "the IMS and EPC domains must differ"),
    ({"rtpengineVariant": "debian"}, "rtpengineVariant = 'debian': must be one of alpine, ubuntu"),
    ({"corednsReplicas": "0"}, "corednsReplicas = 0: must be between 1 and 20"),
    ({"corednsReplicas": "21"}, "corednsReplicas = 21: must be between 1 and 20"),
    ({"pcscfReplicas": "0"}, "pcscfReplicas = 0: must be 1; UE contacts (lookups come from memory), dialogs and IPsec"),
    ({"pcscfReplicas": "2"}, "pcscfReplicas = 2: must be 1; UE contacts (lookups come from memory), dialogs and IPsec"),
    ({"icscfReplicas": "2"}, "icscfReplicas = 2: must be 1; every pod would open Cx to the HSS as the same Diameter peer"),
    ({"scscfReplicas": "2"}, "scscfReplicas = 2: must be 1; registrations live in each pod's memory"),
    ({"rtpengineReplicas": "2"}, "rtpengineReplicas = 2: must be 1; the P-CSCF sends every NG command through the one"),
    ({"scscfReplicas": "three"}, "scscfReplicas = 'three': must be a whole number"),
    ({"pcscfIpsec": "yes"}, "pcscfIpsec = 'yes': must be a boolean, true or false"),
    ({"icscfCpu": "2 cores"}, "icscfCpu = '2 cores': must be a CPU quantity"),
    ({"valkeyMemory": "lots"}, "valkeyMemory = 'lots': must be a memory quantity"),
    ({"valkeyStorage": "1 GB"}, "valkeyStorage = '1 GB': must be a Kubernetes quantity"),
    ({"imageRegistry": "Local Registry"}, "imageRegistry = 'Local Registry': must be a lowercase registry"),
    ({"imageTag": "latest"}, "imageTag = 'latest': pin a version"),
    ({"imageTag": "-rc1"}, "imageTag = '-rc1': must be 1-128 of"),
    ({"imagePlatform": "windows/amd64"}, "imagePlatform = 'windows/amd64': must be one of linux/amd64, linux/arm64"),
    ({"imageBuild": "false", "imagePush": "true"}, "imagePush = true with imageBuild = false"),
    ({"valkeyImage": "valkey/valkey"}, "valkeyImage = 'valkey/valkey': must be an image reference pinned"),
    ({"corednsImage": "coredns/coredns:latest"}, "corednsImage = 'coredns/coredns:latest': must be an image reference pinned"),
    ({"pcscfAddress": "300.1.1.1"}, "pcscfAddress = '300.1.1.1': must be an IPv4 address"),
    ({"icscfAddress": "10.96.0.20", "scscfAddress": "10.96.0.20"}, "scscfAddress = '10.96.0.20': clashes with icscfAddress"),
    ({"pcscfReplica": "2"}, "pcscfReplica: unknown setting; did you mean pcscfReplicas?"),
    ({"valkeyPassword": "short"}, "valkeyPassword = <secret of 5 characters>: must be at least 16 characters"),
    ({"valkeyPassword": "with space in the password"}, "valkeyPassword = <secret>: must not contain whitespace"),
]


@pytest.mark.parametrize(("config", "message"), INVALID, ids=[m.split(":")[0] for _, m in INVALID])
def test_bad_value_fails_with_its_key_and_creates_nothing(config, message):
    run = run_program(config)
    assert run.error is not None, f"{config} was accepted"
    assert message in str(run.error)
    assert "nothing was created" in str(run.error)
    assert run.resources == [], f"{len(run.resources)} resources registered despite the error"


def test_a_password_set_in_plain_text_is_refused_and_not_shown():
    password = "a-plain-text-password-0123"
    run = run_program({"valkeyPassword": password}, plain_text=("valkeyPassword",))
    message = str(run.error)
    assert "valkeyPassword = <not shown>: set in plain text in the stack config file" in message
    assert "pulumi config set --secret valkeyPassword" in message and password not in message
    assert run.resources == []


def test_secret_values_never_appear_in_errors():
    secret = "tooshort-secret"
    run = run_program({"valkeyPassword": secret})
    assert secret not in str(run.error)


def test_invalid_cases_are_distinct():
    assert len({m for _, m in INVALID}) == len(INVALID) >= 20
