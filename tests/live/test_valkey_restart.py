"""Live: registration state kept in Valkey survives a Valkey crash, and a call needs no re-registration.

The P-CSCF writes its contacts through to Valkey (ims_usrloc_pcscf, db_mode 1). Valkey is
killed (SIGKILL: only the append-only file can bring the rows back) and started again on the
rendered config; then the P-CSCF is restarted too, so the contacts it routes the call with can
only have come from Valkey. The S-CSCF keeps its contacts in memory (ims_usrloc_scscf on db_redis
crashes at start-up on 6.0.1 too, see the README) and is left running.
"""

from __future__ import annotations

import re
import signal

from tests.live import sipp


def location_rows(core, ues: tuple[sipp.Ue, ...]) -> dict[str, dict[str, str]]:
    """The P-CSCF's Valkey rows of these UEs' contacts (db_redis key: aor, received port). Only
    theirs: rows other tests left may expire in the P-CSCF's timer while this test runs."""
    keys = set(core.valkey.cli("pcscf", "--scan", "--pattern", "location:entry::*").split())
    rows = {}
    for key in sorted(keys & {f"location:entry::sip:{ue.name}@{ue.address}:{ue.port}:{ue.port}" for ue in ues}):
        # HGETALL: field, value, field, value ... (one a line); a rewrite may reorder fields.
        words = core.valkey.cli("pcscf", "HGETALL", key).split("\n")[:-1]
        rows[key] = dict(zip(words[0::2], words[1::2], strict=True))
    return rows


def test_call_succeeds_without_reregistration_after_valkey_and_pcscf_restart(core):
    alice, bob = core.users.alice, core.users.bob
    domain = core.settings.ims_domain
    for ue in (alice, bob):
        run = core.sipp(ue, sipp.register(ue, domain), f"register-{ue.name}-before-valkey-restart")
        assert run.returncode == 0, run.explain()
    before = location_rows(core, (alice, bob))
    assert len(before) == 2 and all(row.get("reg_state") == "2" for row in before.values()), before

    core.valkey.restart(signal.SIGKILL)
    assert location_rows(core, (alice, bob)) == before
    assert "DB loaded from incr file" in core.valkey.server.log()

    core.kamailio["pcscf"].stop()
    core.start_cscf("pcscf")

    callee = core.sipp(bob, sipp.answer(bob), "answer-bob-after-restart", timeout=20, background=True)
    caller = core.sipp(alice, sipp.call(alice, bob, domain), "call-alice-bob-after-restart")
    callee.wait()
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()
    assert not caller.received("SIP/2.0 401"), "the call was challenged: the P-CSCF lost the registration"


def test_the_call_after_the_restart_is_anchored_in_rtpengine(core):
    messages = (core.workdir / "answer-bob-after-restart.messages").read_text(encoding="utf-8")
    connections = re.findall(r"(?m)^c=IN IP4 (\S+)", messages.split("INVITE sip:", 1)[1].split("\n\n\n", 1)[0])
    assert connections == [core.settings.nf("rtpengine").address], connections
    # The answer too: bob's 200 reaches alice with rtpengine's address, not bob's.
    messages = (core.workdir / "call-alice-bob-after-restart.messages").read_text(encoding="utf-8")
    answer = messages.split("SIP/2.0 200 OK", 1)[1].split("\n\n\n", 1)[0]
    assert re.findall(r"(?m)^c=IN IP4 (\S+)", answer) == [core.settings.nf("rtpengine").address], answer
