"""The configs the Kubernetes component ships start, and the pods' readiness probe can fail.

The rest of the live tier runs the loopback shape (`bind_address=True`, fixed 127.0.0.x
addresses). Here each CSCF role gets the files `components/cscf.py` mounts: `render(settings,
role)` of a stack without fixed addresses, so Kamailio listens on 0.0.0.0 and advertises its
FQDN, which it resolves at start like its peers' names. Each role runs in its own network
namespace, like a pod: the loopback, plus the addresses the zone names (stand-ins for the
Services' ClusterIPs) on it, the product's CoreDNS zones as its resolver and a Valkey at the
address the zone gives `valkey`.

The stack has Rx (the default) and IPsec (off by default) on, with the pod's address in POD_IP as
the downward API gives it: ims_ipsec_pcscf loads and opens its protected ports there (root in
the namespace can use xfrm), and the PCRF and HSS, which a default stack gives no address, simply get no A
record; cdp logs that and Kamailio starts all the same. Nothing is turned off. Kamailio is the
image's minor (6.0, from the Debian 13 root). Not reproduced: the pod's user and capabilities
(here everything runs as root).

The liveness probe (and the first step of readiness) is the image's `sip-options-probe 127.0.0.1 5060` under busybox `sh`,
with only busybox applets on PATH (nc, timeout, head, tr, date), as in the Alpine image.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from components.render import kamailio as render_kamailio
from components.settings import CSCF_ROLES
from tests import coredns_daemon, debian_root
from tests.live.conftest import Daemon
from tests.netns import NetNamespace, can_create_namespaces
from tests.profiles import TEST_VALKEY_PASSWORD, stack_settings
from tests.tooling import ROOT, missing
from tests.valkey_daemon import Valkey

PROBE = ROOT / "dockerfiles" / "kamailio" / "sip-options-probe"
BUSYBOX = "/usr/bin/busybox"  # in the Debian 13 root
# The addresses the IMS DNS hands out, as the Services' ClusterIPs would be. HSS and PCRF stay
# without one, as in a default stack.
ZONE_ADDRESSES = {
    "pcscf": "10.96.0.11",
    "icscf": "10.96.0.12",
    "scscf": "10.96.0.13",
    "valkey": "10.96.0.30",
    "rtpengine": "10.96.0.40",
    "coredns": "10.96.0.53",
}
# The pod's own address (downward API status.podIP, env POD_IP), unlike the Service's above.
POD_ADDRESS = "10.244.0.11"
READY_TIMEOUT = 10.0
# "Stays up": still running, and still ready, this long after it first became ready.
STAY_UP_SECONDS = 1.0


@pytest.fixture(scope="module")
def settings():
    """A Kubernetes stack's settings: the defaults, no fixed addresses."""
    s = stack_settings("kubernetes", pcscfIpsec=True, pcscfGmExposure="hostNetwork")
    assert not any(s.nf(role).address for role in CSCF_ROLES)
    assert s.pcscf_ipsec and s.pcscf_rx, "IPsec (not a default) and Rx on"
    return s


@pytest.fixture(scope="module")
def busybox_path(tmp_path_factory) -> str:
    """A PATH of busybox applets only (the Debian 13 root's busybox), holding a copy of the probe,
    so the probe's nc/timeout/head/tr/date are busybox's."""
    debian_root.require()
    reason = can_create_namespaces()
    if reason:
        missing(reason, "run the live tier as root (CI does)")
    coredns_daemon.coredns_binary()
    applets = tmp_path_factory.mktemp("busybox-bin")
    subprocess.run(debian_root.command([BUSYBOX, "--install", "-s", str(applets)]), check=True)
    (applets / PROBE.name).write_bytes(PROBE.read_bytes())
    return str(applets)


def probe(ns: NetNamespace, busybox_path: str, port: int = render_kamailio.SIP_PORT) -> subprocess.CompletedProcess:
    """The readiness probe's command, in the pod's (namespace's) network."""
    script = f"{busybox_path}/{PROBE.name}"
    return ns.run(
        debian_root.command(["env", "-i", f"PATH={busybox_path}", BUSYBOX, "sh", script, "127.0.0.1", str(port)]),
        capture_output=True,
        text=True,
        timeout=10,
    )


def render_config(settings, role: str, config_dir: Path) -> Path:
    """The role's ConfigMap and Secret files, as `components/cscf.py` renders them, in config_dir."""
    files = render_kamailio.render(settings, role, config_dir=str(config_dir))
    files.update(render_kamailio.render_secrets(settings, role, TEST_VALKEY_PASSWORD))
    for rel, text in files.items():
        path = config_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return config_dir / "kamailio.cfg"


def kamailio_argv(cfg: Path) -> list[str]:
    """The container's arguments (components/cscf.py) and its downward-API environment."""
    return debian_root.command(["env", f"{render_kamailio.POD_IP_ENV}={POD_ADDRESS}", "kamailio", "-DD", "-E", "-f", str(cfg)])


@pytest.fixture
def pod(request, settings, busybox_path, tmp_path):
    """One role's network namespace with its resolver and Valkey; yields (role, ns, start)."""
    role = request.param
    ns = NetNamespace(f"k8s{role}{os.getpid() % 100000}", hosts={}, nameserver=ZONE_ADDRESSES["coredns"]).create()
    try:
        for address in (*ZONE_ADDRESSES.values(), POD_ADDRESS):
            subprocess.run(["ip", "-n", ns.name, "addr", "add", f"{address}/32", "dev", "lo"], check=True)
        # The Valkey server binds the address the zone names (its own settings say only that).
        valkey = Valkey(
            stack_settings("kubernetes", valkeyAddress=ZONE_ADDRESSES["valkey"]),
            TEST_VALKEY_PASSWORD,
            tmp_path / "valkey",
            netns=ns,
        )
        valkey.render()
        with coredns_daemon.serving(settings, tmp_path / "dns", netns=ns, addresses=ZONE_ADDRESSES):
            valkey.start()
            try:
                cfg = render_config(settings, role, tmp_path / "kamailio")
                # The container's arguments (components/cscf.py), with the config where we wrote it.
                kamailio = Daemon(f"kamailio {role} (Kubernetes shape)", kamailio_argv(cfg), tmp_path / f"kamailio-{role}.log")
                try:
                    yield role, ns, kamailio
                finally:
                    kamailio.stop()
            finally:
                valkey.stop()
    finally:
        ns.destroy()


@pytest.mark.parametrize("pod", CSCF_ROLES, indirect=True)
def test_kubernetes_config_starts_and_probe_tracks_it(pod, busybox_path):
    role, ns, kamailio = pod

    before = probe(ns, busybox_path)
    assert before.returncode != 0, "the probe passed with nothing listening"
    assert "no SIP answer" in before.stderr

    kamailio.start(ns)
    deadline = time.monotonic() + READY_TIMEOUT
    result = probe(ns, busybox_path)
    while result.returncode != 0 and kamailio.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
        result = probe(ns, busybox_path)
    assert kamailio.alive(), f"{role} exited at start:\n{kamailio.tail()}"
    assert result.returncode == 0, f"{role} never ready: {result.stderr}\n{kamailio.tail()}"

    time.sleep(STAY_UP_SECONDS)
    assert kamailio.alive(), f"{role} exited after becoming ready:\n{kamailio.tail()}"
    assert probe(ns, busybox_path).returncode == 0

    kamailio.stop()
    after = probe(ns, busybox_path)
    assert after.returncode != 0, f"the probe passed after {role} was stopped"
    assert "no SIP answer" in after.stderr


# --- Rx: the signalling flows name the P-CSCF's own address --------------------------------

PCRF_ADDRESS = "10.96.0.21"
UE_ADDRESS = "10.45.0.2"
# Not 5060: the P-CSCF listens on 0.0.0.0:5060 in this namespace.
UE_PORT = 5080


def register_once(ue_address: str, domain: str) -> str:
    """One initial REGISTER (its AAR is what the test looks at; the I-CSCF is not running)."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="register for the signalling AAR">
  <send>
    <![CDATA[
      REGISTER sip:{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:ue@{domain}>;tag=[pid]reg
      To: <sip:ue@{domain}>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:ue@{ue_address}:[local_port]>;expires=600
      Expires: 600
      Authorization: Digest username="ue@{domain}", realm="{domain}", nonce="", uri="sip:{domain}", response=""
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="504" timeout="20000"/>
</scenario>
"""


def test_registration_aar_names_the_pcscf_pod_address(settings, busybox_path, tmp_path):
    """Without a fixed pcscfAddress the P-CSCF's signalling flows carry the pod's address
    (POD_IP), never 127.0.0.1: the PCRF gates what the UE really sends to the P-CSCF."""
    from tests.doubles.rx_pcrf import RxPcrfTestDouble

    addresses = {**ZONE_ADDRESSES, "pcrf": PCRF_ADDRESS}
    ns = NetNamespace(f"k8srx{os.getpid() % 100000}", hosts={}, nameserver=addresses["coredns"]).create()
    pcrf = RxPcrfTestDouble(
        origin_host=settings.nf("pcrf").fqdn, origin_realm=settings.nf("pcrf").realm,
        bind_address=PCRF_ADDRESS, port=render_kamailio.DIAMETER_PORT,
    )
    try:
        for address in (*addresses.values(), POD_ADDRESS, UE_ADDRESS):
            subprocess.run(["ip", "-n", ns.name, "addr", "add", f"{address}/32", "dev", "lo"], check=True)
        valkey = Valkey(
            stack_settings("kubernetes", valkeyAddress=ZONE_ADDRESSES["valkey"]), TEST_VALKEY_PASSWORD,
            tmp_path / "valkey", netns=ns,
        )
        valkey.render()
        with coredns_daemon.serving(settings, tmp_path / "dns", netns=ns, addresses=addresses):
            valkey.start()
            with ns.entered():
                pcrf.start()
            cfg = render_config(settings, "pcscf", tmp_path / "kamailio")
            kamailio = Daemon("kamailio pcscf (Kubernetes shape, Rx)", kamailio_argv(cfg), tmp_path / "kamailio-pcscf-rx.log")
            try:
                kamailio.start(ns)
                pcrf.wait_for_peer(settings.nf("pcscf").fqdn, timeout=15)
                scenario = tmp_path / "register.xml"
                scenario.write_text(register_once(UE_ADDRESS, settings.ims_domain), encoding="utf-8")
                ue = subprocess.Popen(
                    ns.prefix() + debian_root.command(
                        ["sipp", f"{ZONE_ADDRESSES['pcscf']}:{render_kamailio.SIP_PORT}", "-sf", str(scenario),
                         "-i", UE_ADDRESS, "-p", str(UE_PORT), "-m", "1", "-nostdin", "-nd"]
                    ),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                )
                try:
                    aar = pcrf.wait_for_request("AAR", timeout=10)
                except TimeoutError:
                    ue.kill()
                    raise AssertionError(f"no AAR; SIPp said: {ue.communicate()[0][-2000:]!r}\n{kamailio.tail()}") from None
                finally:
                    if ue.poll() is None:
                        ue.kill()
                        ue.communicate()
                assert aar.signalling and aar.framed_ip == UE_ADDRESS, aar
                # ims_qos writes the UE's port on the P-CSCF's side of these flows as well (seen on
                # 6.0.1; a UE on 5060 hides it): the addresses are what this test is about.
                flows = {re.sub(r" \d+( to | ?$)", r" PORT\1", fd).strip() for fd in aar.flow_descriptions}
                assert flows == {
                    f"permit out ip from {POD_ADDRESS} PORT to {UE_ADDRESS} PORT",
                    f"permit in ip from {UE_ADDRESS} PORT to {POD_ADDRESS} PORT",
                }, (aar.flow_descriptions, kamailio.tail())
                assert all(f"{UE_ADDRESS} {UE_PORT}" in fd for fd in aar.flow_descriptions), aar.flow_descriptions
                assert pcrf.take_errors() == []
            finally:
                kamailio.stop()
                valkey.stop()
    finally:
        pcrf.stop()
        ns.destroy()
