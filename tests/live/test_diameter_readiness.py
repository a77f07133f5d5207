"""Live: a CSCF is ready only once its Diameter peer is open (dockerfiles/kamailio/cscf-ready-probe).

The S-CSCF runs its rendered config (Kamailio 6.0 from the Debian 13 root) in a network
namespace of this module's own, with the IMS DNS serving the rendered zones; the Cx HSS test
double plays open5gs' HSS on the HSS address. The probe is the script the image ships, run as
the kubelet would (busybox sh, the root's kamcmd on the S-CSCF's ctl socket), with the command
the component renders. The double does not connect to the S-CSCF here: in a cluster the HSS
reaches a CSCF only through its Service, which routes to Ready pods only, so the connection a
restarted CSCF needs to become ready is the one its own cdp opens. That CER is accepted only
with Host-IP-Address (the double refuses it without, as freeDiameter does): `refused_cers`
stays empty, also when cdp (6.0.1) fails to read the address of its first socket: it then
drops that connection and connects again rather than send the CER without it.

What a user would notice: while the HSS is down the S-CSCF answers SIP but is not ready (out
of its Service: no UE is sent to a CSCF that would answer 504); once the HSS is up it becomes
ready by itself; when the HSS goes away it is taken out again.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from components.render import kamailio as render_kamailio
from tests import coredns_daemon, debian_root
from tests.doubles.cx_hss import CxHssTestDouble
from tests.live.conftest import Daemon, _wait, sip_options
from tests.netns import NetNamespace, can_create_namespaces
from tests.tooling import ROOT, missing

PROBE_DIR = ROOT / "dockerfiles" / "kamailio"
ROLE = "scscf"
# cdp retries a closed peer every Tc (5 s in the rendered diameter.xml).
OPEN_WITHIN = 20


@pytest.fixture(scope="module")
def applets(tmp_path_factory):
    """busybox applets the Alpine image has (the probes call them by name) and the probes."""
    debian_root.require()
    path = tmp_path_factory.mktemp("ready-probe-bin")
    for applet in ("sh", "nc", "timeout", "head", "tr", "date", "awk"):
        os.symlink("/usr/bin/busybox", path / applet)
    for script in ("sip-options-probe", "cscf-ready-probe"):
        (path / script).write_bytes((PROBE_DIR / script).read_bytes())
        (path / script).chmod(0o755)
    return path


@pytest.fixture(scope="module")
def scscf_alone(live_settings, tmp_path_factory):
    """Namespace, IMS DNS and the S-CSCF; the HSS double created but not started."""
    reason = can_create_namespaces()
    if reason:
        missing(reason, "run the live tier as root (CI does)")
    debian_root.require()
    workdir = tmp_path_factory.mktemp("ready")
    ns = NetNamespace(f"imsready{os.getpid() % 100000}", hosts={}, nameserver=live_settings.nf("coredns").address).create()
    daemon = None
    try:
        with coredns_daemon.serving(live_settings, workdir / "dns", netns=ns):
            config_dir = workdir / ROLE
            for rel, text in render_kamailio.render(live_settings, ROLE, config_dir=str(config_dir), bind_address=True).items():
                (config_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (config_dir / rel).write_text(text, encoding="utf-8")
            argv = ["kamailio", "-DD", "-E", *live_settings.kamailio[ROLE].args(), "-f", str(config_dir / "kamailio.cfg")]
            daemon = Daemon("kamailio scscf (readiness)", debian_root.command(argv), workdir / "kamailio-scscf.log").start(ns)
            address = live_settings.nf(ROLE).address
            _wait(lambda: (sip_options(ns, address) or "").startswith("SIP/2.0 200"), 15, "scscf answering OPTIONS", daemon)
            hss = live_settings.nf("hss")
            double = CxHssTestDouble(
                origin_host=hss.fqdn, origin_realm=hss.realm, bind_address=hss.address, port=render_kamailio.DIAMETER_PORT
            )
            yield ns, config_dir, double, daemon
            double.stop()
    finally:
        if daemon is not None:
            daemon.stop()
        ns.destroy()


def probe(live_settings, ns, config_dir, applets, role: str = ROLE) -> subprocess.CompletedProcess:
    """The rendered readiness command, with the image's paths mapped to this test's."""
    command = render_kamailio.readiness_command(live_settings, role, ctl_socket=f"unix:{config_dir / 'kamailio_ctl'}")
    assert command[0] == render_kamailio.READY_PROBE
    command[1] = live_settings.nf(role).address  # the loopback profile binds each role's own address
    inside = ["/usr/bin/env", f"PATH={applets}:/usr/sbin:/usr/bin:/bin", "sh", str(applets / "cscf-ready-probe"), *command[1:]]
    return subprocess.run(ns.prefix() + debian_root.command(inside), capture_output=True, text=True, timeout=20)


def wait_probe(live_settings, ns, config_dir, applets, want: int, within: float) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    while True:
        result = probe(live_settings, ns, config_dir, applets)
        elapsed = time.monotonic() - start
        if result.returncode == want or elapsed > within:
            return result, elapsed
        time.sleep(0.5)


def test_scscf_is_ready_only_while_its_hss_peer_is_open(live_settings, scscf_alone, applets):
    ns, config_dir, hss, scscf = scscf_alone
    hss_fqdn = live_settings.nf("hss").fqdn
    assert render_kamailio.readiness_peers(live_settings, ROLE) == (hss_fqdn,)

    down = probe(live_settings, ns, config_dir, applets)
    assert down.returncode == 1, down.stdout + down.stderr
    assert f"Diameter peer {hss_fqdn}:" in down.stderr and "not open" in down.stderr, down.stderr
    assert (sip_options(ns, live_settings.nf(ROLE).address) or "").startswith("SIP/2.0 200"), "SIP itself answers"

    with ns.entered():
        hss.start()
    up, seconds = wait_probe(live_settings, ns, config_dir, applets, 0, OPEN_WITHIN)
    assert up.returncode == 0, f"not ready {seconds:.1f}s after the HSS came up: {up.stderr}"
    print(f"S-CSCF ready {seconds:.1f}s after the HSS double started listening")
    # The connection is the S-CSCF's own (the double opens none), and its CER was accepted.
    assert hss.peers == [live_settings.nf(ROLE).fqdn]
    assert hss.refused_cers == [], "the S-CSCF's CER lacked Host-IP-Address"
    # cdp may still look the connecting socket up in the wrong process (the timer process
    # connects, the receiver process sends the CER) and log "I_Snd_CER(): Error on finding local
    # host address"; 6.0 then drops that connection and connects again from the receiver, where
    # the address is found, instead of sending the CER without it as 5.6.3 did.
    log = scscf.log.read_text(errors="replace")
    if "Error on finding local host address" in log:
        print("cdp dropped a first connection whose local address it could not read, and reconnected")

    hss.stop()
    gone, seconds = wait_probe(live_settings, ns, config_dir, applets, 1, OPEN_WITHIN)
    assert gone.returncode == 1 and f"Diameter peer {hss_fqdn}:" in gone.stderr, gone.stderr
    assert hss.take_errors() == []


def test_every_role_of_the_running_core_is_ready_with_its_peers_open(live_settings, core, applets):
    """The live core (P-CSCF with Rx to the PCRF double, I-/S-CSCF with Cx to the HSS double):
    the rendered probe of each role finds its peer by the name cdp lists and passes."""
    for role in ("pcscf", "icscf", "scscf"):
        # One peer each: Rx for the P-CSCF (on in the live profile), Cx for the others.
        assert len(render_kamailio.readiness_peers(live_settings, role)) == 1, role
        result = probe(live_settings, core.ns, core.workdir / role, applets, role)
        assert result.returncode == 0, f"{role}: {result.stderr}"
