"""Live: a restarted P-CSCF keeps each registration in one Valkey row, also for a UE that
registers while the P-CSCF is still starting.

The P-CSCF's first SIP worker pings rtpengine and then loads the contacts from Valkey
(ims_usrloc_pcscf, db_mode 1); the other workers must not take SIP before that. When they did
(Kamailio's default), a UE re-registering at once got a second contact in memory next to the one
being loaded, both on one row: its de-registration removed the row, and its next registration got
a 200 while the row stayed gone (db_redis reports no affected rows, so the update inserts
nothing). rtpengine not answering the start-up ping holds the first worker for the ping's timeout,
which makes that window seconds long here; a slow Valkey or a busy node makes it shorter but real.
"""

from __future__ import annotations

import subprocess
import time

from components.render import rtpengine as render_rtpengine
from tests.live import sipp


def row(core, ue: sipp.Ue) -> dict[str, str]:
    """The P-CSCF's Valkey row of `ue`'s contact (db_redis key: aor, received port), or {}."""
    key = f"location:entry::sip:{ue.name}@{ue.address}:{ue.port}:{ue.port}"
    raw = core.valkey.cli("pcscf", "HGETALL", key)
    if not raw.strip():  # no such key: valkey-cli prints one empty line
        return {}
    words = raw.split("\n")[:-1]
    return dict(zip(words[0::2], words[1::2], strict=True))


def register(core, ue: sipp.Ue, name: str, expires: int = 600) -> None:
    run = core.sipp(ue, sipp.register(ue, core.settings.ims_domain, expires=expires), name)
    assert run.returncode == 0, run.explain()
    assert run.received("SIP/2.0 200"), run.explain()


def test_a_ue_registering_while_the_pcscf_starts_keeps_its_valkey_row(core):
    alice = core.users.alice
    register(core, alice, "restart-register-before")
    assert row(core, alice).get("reg_state") == "2", row(core, alice)

    # rtpengine silent (not refused): the start-up ping waits for its timeout.
    drop = ["-p", "udp", "-d", core.rtpengine.address, "--dport", str(render_rtpengine.NG_PORT), "-j", "DROP"]
    core.kamailio["pcscf"].stop()
    subprocess.run(core.ns.prefix() + ["iptables", "-w", "-I", "INPUT", *drop], check=True)
    try:
        started = time.monotonic()
        daemon = core.start_cscf("pcscf")
        print(f"P-CSCF answering SIP {time.monotonic() - started:.1f}s after its start (rtpengine silent)")
        register(core, alice, "restart-register-at-once")
        # The first worker gives up on rtpengine and then loads the contacts (a few ms here).
        deadline = time.monotonic() + 30
        while "proxy did not respond to ping" not in daemon.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, daemon.tail()
            time.sleep(0.2)
        time.sleep(1)
        register(core, alice, "restart-deregister", expires=0)
        assert row(core, alice) == {}, row(core, alice)
        register(core, alice, "restart-register-again")
        again = row(core, alice)
        assert again.get("reg_state") == "2" and again.get("received") == alice.address, again
    finally:
        subprocess.run(core.ns.prefix() + ["iptables", "-w", "-D", "INPUT", *drop], check=True)
        # A P-CSCF whose start-up ping was answered, for the tests after this one.
        core.kamailio["pcscf"].stop()
        core.start_cscf("pcscf")
