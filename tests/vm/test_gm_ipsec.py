"""vm tier: Gm protected by IPsec (TS 33.203), with real ESP in Debian 13's kernel.

This machine's kernel has no ESP, so the whole core runs in a throwaway qemu VM (tests/vm/qemu.py)
with no network device. The host renders what the product ships, with its own renderers: the
P-CSCF with IPsec on (`pcscfIpsec`), I- and S-CSCF, Valkey and rtpengine, on a loopback profile
whose P-CSCF Gm address is on a veth towards the UEs' namespace. Inside, tests/vm/guest_gm_ipsec.py
starts them with the Cx HSS double and drives two UE doubles (tests/doubles/ims_ue.py) through
sec-agree, a call, unprotected requests to a protected port and de-registration; every check it
made comes back in result.json and is asserted here one by one.

IMS_VM_DEBUG=<role> renders that role with Kamailio's debug log level (the logs come back in the
failure report). Rx is on, as a user who turns IPsec on gets it (the default): the Rx PCRF double
stands in for the PCRF, and Kamailio's ims_qos finds the registration's contact differently with IPsec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components.render import kamailio as render_kamailio
from components.render import rtpengine as render_rtpengine
from components.render import valkey as render_valkey
from components.settings import CSCF_ROLES
from tests.figures import FIGURES
from tests.netns import hosts_for
from tests.profiles import TEST_VALKEY_PASSWORD, loopback_settings
from tests.tooling import missing
from tests.vm import qemu

pytestmark = pytest.mark.vm

GUEST_WORK = "/ims/work"
# The guest copies work/etc here first: Kamailio's control socket cannot live on 9p.
GUEST_CONFIG = "/tmp/ims"
# TEST-NET-1 (RFC 5737): inside the VM only, which has no network device.
PCSCF_GM = "192.0.2.1"
UE_ADDRESSES = ["192.0.2.10", "192.0.2.11"]
STRANGER = "192.0.2.12"
BOOT_TIMEOUT = 900

UES = [
    ("alice", "a11ce0000000000000000000000000a1", "0f0e0d0c0b0a09080706050403020100"),
    ("bob", "b0b00000000000000000000000000b0b", "0f0e0d0c0b0a09080706050403020100"),
]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def scenario(work: Path) -> dict:
    """Renders every file the guest runs into `work`; returns scenario.json's content."""
    settings = loopback_settings(
        stack="vm", pcscfIpsec=True, pcscfGmExposure="hostNetwork", pcscfRx=True, pcscfAddress=PCSCF_GM
    )
    for role in CSCF_ROLES:
        config_dir = f"{GUEST_CONFIG}/{role}"
        files = render_kamailio.render(settings, role, config_dir=config_dir, bind_address=True)
        files.update(render_kamailio.render_secrets(settings, role, TEST_VALKEY_PASSWORD))
        for rel, text in files.items():
            write(
                work / "etc" / role / rel,
                text
                + ("#!define LOG_LEVEL 3\n" if os.environ.get("IMS_VM_DEBUG") == role and rel == "defines.cfg" else ""),
            )
    write(work / "icscf-seed.valkey", render_kamailio.icscf_seed_script(settings))
    valkey = settings.nf("valkey")
    conf = render_valkey.render(
        settings, bind=valkey.address, data_dir="/tmp", secret_dir=f"{GUEST_CONFIG}/valkey/secret"
    )
    write(work / "etc" / "valkey" / "valkey.conf", conf["valkey.conf"])
    for name, text in render_valkey.render_secrets(TEST_VALKEY_PASSWORD).items():
        write(work / "etc" / "valkey" / "secret" / name, text)
    for name, text in render_rtpengine.render(settings).items():
        write(work / "etc" / "rtpengine" / name, text)
    rtp = settings.nf("rtpengine").address
    hosts = "127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in sorted(hosts_for(settings).items()))
    hss, pcrf = settings.nf("hss"), settings.nf("pcrf")
    return {
        "config_dir": GUEST_CONFIG,
        "domain": settings.ims_domain,
        "hosts": hosts,
        "net": {"pcscf": PCSCF_GM, "ues": UE_ADDRESSES, "stranger": STRANGER},
        "valkey": {
            "address": valkey.address,
            "port": render_valkey.VALKEY_PORT,
            "password": TEST_VALKEY_PASSWORD,
            "icscf_db": settings.valkey_databases["icscf"],
        },
        "rtpengine_args": render_rtpengine.daemon_args(
            rtp, settings.media.advertise_address, config_dir=f"{GUEST_CONFIG}/rtpengine"
        ),
        "hss": {"fqdn": hss.fqdn, "realm": hss.realm, "address": hss.address, "port": render_kamailio.DIAMETER_PORT},
        "pcrf": {"fqdn": pcrf.fqdn, "realm": pcrf.realm, "address": pcrf.address, "port": render_kamailio.DIAMETER_PORT},
        "cscf": {
            # The memory pools the stack gives each pod (kamailio -m/-M): the shipped overload
            # gauges are fractions of them.
            role: {"address": settings.nf(role).address, "fqdn": settings.nf(role).fqdn, "args": settings.kamailio[role].args()}
            for role in CSCF_ROLES
        },
        "ues": [
            {
                "name": name,
                "impi": f"{name}@{settings.ims_domain}",
                "impu": f"sip:{name}@{settings.ims_domain}",
                "k": k,
                "op": op,
                "amf": "8000",
            }
            for name, k, op in UES
        ],
        # A de-registered contact goes delete_delay (2 s) after its 200, found by the usrloc timer
        # (every 10 s) once expires_grace (10 s) has passed: about 22 s, more under emulation.
        "sa_removal_timeout": 40,
        # The pending contacts go pending_reg_expires (30 s) after the last unprotected REGISTER,
        # found the same way: about 50 s.
        "pending_expiry_timeout": 75,
    }


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory) -> tuple[dict, qemu.Boot, Path]:
    if os.geteuid() != 0:
        missing("root", "run the vm tier as root (qemu shares files over 9p with security_model=none)")
    qemu.require_image()
    work = tmp_path_factory.mktemp("vm-gm-ipsec")
    os.chmod(work, 0o755)
    sc = scenario(work)
    write(work / "scenario.json", json.dumps(sc, indent=1))
    write(
        work / "run.sh",
        f"cd /ims/repo\nPYTHONPATH=/ims/repo PYTHONDONTWRITEBYTECODE=1 exec python3 -m tests.vm.guest_gm_ipsec {GUEST_WORK}\n",
    )
    result = qemu.boot(work, timeout=BOOT_TIMEOUT)
    FIGURES.append(f"vm tier: Gm IPsec guest booted, ran and powered off in {result.seconds:.0f} s (qemu TCG)")
    path = work / "result.json"
    checks = json.loads(path.read_text()) if path.is_file() else {"checks": []}
    return checks, result, work


def _explain(result: qemu.Boot, work: Path) -> str:
    logs = []
    for log in sorted((work / "logs").glob("*.log")) if (work / "logs").is_dir() else []:
        logs.append(f"--- {log.name} (last 60 lines)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:]))
    return (
        f"guest exit {result.returncode}\n--- run.log\n{result.run_log[-8000:]}\n--- console\n{result.console[-3000:]}\n"
        + "\n".join(logs)
    )


EXPECTED = [
    "alice: 401 carries Security-Server",
    "alice: the P-CSCF made 4 ESP SAs and their policies for the UE at the 401",
    "alice: the P-CSCF's SAs encrypt (AES-CBC with CK) and authenticate (HMAC-SHA-1-96 with IK)",
    "alice: protected REGISTER answered 200",
    "alice: the 200 to the protected REGISTER came over the UE's SAs",
    "alice: the REGISTER left and the 200 arrived as ESP (UE's SA counters)",
    "alice: the PCRF authorised the UE's signalling (AAR for its address)",
    "bob: protected REGISTER answered 200",
    "bob: the 200 to the protected REGISTER came over the UE's SAs",
    "bob: the PCRF authorised the UE's signalling (AAR for its address)",
    "call: bob's INVITE came over the UE's SAs",
    "call: alice got 200 to her INVITE",
    "call: alice's 200 came over the UE's SAs",
    "call: bob's BYE came over the UE's SAs",
    "call: BYE answered 200 end to end",
    "call: alice's 200 to BYE came over the UE's SAs",
    "call: bob's inbound and outbound ESP counters rose during the call",
    "unprotected OPTIONS to a protected port, from the UE's own address and port: dropped by the kernel",
    "unprotected INVITE to a protected port from an address without SAs: refused 403",
    "the pending contacts of the unprotected REGISTERs expired",
    "alice: the SAs outlive the pending contact",
    "bob: the SAs outlive the pending contact",
    "alice: de-REGISTER answered 200",
    "alice: the 200 to the de-REGISTER came over the UE's SAs",
    "alice: the HSS holds the UE de-registered",
    "alice: the P-CSCF removed the UE's SAs and policies when the registration ended",
    "alice: the PCRF holds no Rx session of the UE after the registration ended",
    "alice gone, bob's SAs stay",
    "bob: the HSS holds the UE de-registered",
    "bob: the P-CSCF removed the UE's SAs and policies when the registration ended",
    "bob: the PCRF holds no Rx session of the UE after the registration ended",
    "the HSS double had no errors",
    "the PCRF double had no errors",
]


def test_guest_ran_every_check_and_all_passed(guest_run):
    checks, result, work = guest_run
    failed = [c for c in checks["checks"] if not c["ok"]]
    assert result.returncode == 0 and not failed, (
        "\n".join(f"{c['name']}: {c['detail']}" for c in failed) + "\n" + _explain(result, work)
    )
    done = {c["name"] for c in checks["checks"]}
    assert set(EXPECTED) <= done, f"checks that never ran: {sorted(set(EXPECTED) - done)}\n" + _explain(result, work)


@pytest.mark.parametrize("name", EXPECTED)
def test_check(guest_run, name):
    checks, result, work = guest_run
    found = [c for c in checks["checks"] if c["name"] == name]
    assert found, f"{name}: never ran\n" + _explain(result, work)
    assert found[0]["ok"], f"{name}: {found[0]['detail']}"
