"""Render tier: every role's rendered Kamailio config passes `kamailio -c` of the version the
image ships (Kamailio 6.0 from the Debian 13 root, tests/debian_root.py).

Run under three stack configs: the default (Kubernetes: listen on all addresses, advertise
the FQDNs), a 3-digit MNC with a custom IMS domain, and IPsec and Rx off. `kamailio -c`
exits 0 even after a CRITICAL parse error in a listen line, so the output is checked too.
Advertised names must resolve when Kamailio starts: the check runs in a network namespace
whose hosts file carries the stack's FQDNs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components.interfaces import valkey_clients
from components.render import kamailio as render_kamailio
from components.render import rtpengine as render_rtpengine
from components.settings import CSCF_ROLES
from tests import debian_root
from tests.netns import NetNamespace, can_create_namespaces, hosts_for
from tests.profiles import TEST_VALKEY_PASSWORD, loopback_settings, stack_settings
from tests.tooling import missing

STACKS = {
    "default": lambda: stack_settings("default"),
    "mnc3-custom-domain": lambda: stack_settings(
        "mnc3", mcc="310", mnc="260", imsDomain="ims.example.net", epcDomain="epc.example.net"
    ),
    "ipsec-rx-off": lambda: stack_settings("plain", pcscfIpsec=False, pcscfRx=False),
    "ipsec-host-network": lambda: stack_settings("ipsec", pcscfIpsec=True, pcscfGmExposure="hostNetwork"),
    "loopback": lambda: loopback_settings(),
    # The S-CSCF with ims_charging and the Ro peer (CGRateS).
    "charging": lambda: stack_settings(
        "charging",
        charging={"enabled": True, "destinations": [{"name": "all", "prefixes": ["+"], "pricePerMinute": 0.1}]},
        cgratesStorDbPassword="render-stordb-password",
    ),
}


@pytest.fixture(scope="module")
def kamailio_bin() -> None:
    debian_root.require()


@pytest.fixture(scope="module")
def namespace_ok() -> None:
    reason = can_create_namespaces()
    if reason:
        missing(reason, "run the render tier as root (CI does)")


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("role", CSCF_ROLES)
def test_kamailio_accepts_rendered_config(stack, role, kamailio_bin, namespace_ok, tmp_path):
    settings = STACKS[stack]()
    bind = stack == "loopback"
    files = render_kamailio.render(settings, role, config_dir=str(tmp_path), bind_address=bind)
    files.update(render_kamailio.render_secrets(settings, role, TEST_VALKEY_PASSWORD))
    write_tree(tmp_path, files)

    ns = NetNamespace(f"imsr{os.getpid() % 100000}{role[0]}", hosts_for(settings)).create()
    try:
        result = ns.run(
            debian_root.command(["kamailio", "-c", "-f", str(tmp_path / "kamailio.cfg")]),
            capture_output=True,
            text=True,
            timeout=60,
            # The pod's address from the downward API (IPsec binds to it, Rx names it).
            env={**os.environ, render_kamailio.POD_IP_ENV: "127.0.0.1"},
        )
    finally:
        ns.destroy()
    output = result.stdout + result.stderr
    problems = [line for line in output.splitlines() if " CRITICAL:" in line or " ERROR:" in line]
    assert result.returncode == 0 and "config file ok" in output and not problems, output


def test_password_only_in_secret_files():
    # The settings the ConfigMap renderer gets hold the password: it must leave it out.
    password = "a-very-secret-valkey-password"
    settings = stack_settings("secret", valkeyPassword=password)
    assert settings.valkey_password == password
    for role in CSCF_ROLES:
        files = render_kamailio.render(settings, role)
        assert not any(password in text for text in files.values())
        secrets = render_kamailio.render_secrets(settings, role, password)
        includes = any(f'include_file "{render_kamailio.SECRETS_FILE}"' in t for t in files.values())
        if role not in valkey_clients():
            assert secrets == {} and not includes, f"{role} uses no Valkey: it gets no password"
            continue
        assert list(secrets) == [render_kamailio.SECRETS_FILE]
        assert f":{password}@valkey." in secrets[render_kamailio.SECRETS_FILE]
        assert includes


def test_diameter_peers_follow_settings():
    settings = stack_settings("peers", mcc="310", mnc="260")
    icscf = render_kamailio.render(settings, "icscf")["diameter.xml"]
    assert 'FQDN="icscf.ims.mnc260.mcc310.3gppnetwork.org"' in icscf
    assert '<Peer FQDN="hss.epc.mnc260.mcc310.3gppnetwork.org" Realm="epc.mnc260.mcc310.3gppnetwork.org"' in icscf
    assert "diameter.xml" not in render_kamailio.render(stack_settings("norx", pcscfRx=False), "pcscf")
    pcscf = render_kamailio.render(settings, "pcscf")["diameter.xml"]
    assert 'FQDN="pcrf.epc.mnc260.mcc310.3gppnetwork.org"' in pcscf and 'id="16777236"' in pcscf


def test_icscf_seed_is_idempotent_rows():
    settings = stack_settings("seed", imsDomain="ims.example.net")
    seed = render_kamailio.icscf_seed(settings)
    assert seed["s_cscf:entry::1"]["s_cscf_uri"] == "sip:scscf.ims.example.net:5060"
    assert seed["nds_trusted_domains:entry::1"]["trusted_domain"] == "ims.example.net"
    assert seed == render_kamailio.icscf_seed(settings)
    assert all(cmd[0] == "HSET" for cmd in render_kamailio.icscf_seed_commands(settings))


def test_pcscf_media_flags_and_ng_port_come_from_the_rtpengine_renderer():
    ubuntu = stack_settings("transcode", rtpengineVariant="ubuntu", rtpengineTranscodingCodecs=["PCMA"])
    defines = render_kamailio.defines(ubuntu, "pcscf")
    flags = " ".join(render_rtpengine.offer_flags(ubuntu))
    assert f'#!define RTPENGINE_FLAGS "{flags}"' in defines and "codec-transcode-PCMA" in flags
    assert f':{render_rtpengine.NG_PORT}"' in defines
    rtp = render_kamailio.render(ubuntu, "pcscf")["route/rtp.cfg"]
    assert "RTPENGINE_FLAGS" in rtp and "replace-origin" not in rtp  # one source for the flags
