"""Live: a registration that lapses (the UE goes silent) stops receiving calls at once, the
HSS is told (SAR TIMEOUT_DEREGISTRATION, TS 29.228 6.1.2 / TS 29.229 6.1.3) and both stores
forget it within a bound.

erin registers asking for 5 s; the S-CSCF grants its minimum (60 s, of which the 200 shows 54:
the registrar keeps 10 % in hand) and she sends nothing more. Once the granted time has passed,
a call to her gets 480 at once instead of waiting for her dead contact's timeout (408); within
CLEANUP_BOUND seconds of the expiry the S-CSCF has sent the HSS one SAR with
Server-Assignment-Type TIMEOUT_DEREGISTRATION naming her IMPU (Public-Identity), her IMPI
(User-Name) and itself (Server-Name), the HSS test double accepted it (its answer would say
DIAMETER_MISSING_AVP, IDENTITIES_DONT_MATCH or UNABLE_TO_COMPLY for a wrong one) and holds her
as not registered, the S-CSCF lists no registration for her and the P-CSCF's row in Valkey is
gone (the bound the README states). grace registers the same way and de-registers at once: the
HSS hears USER_DEREGISTRATION from save() and no timeout SAR after it.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

import pytest

from components.render import kamailio as render_kamailio
from tests import debian_root
from tests.doubles import cx_hss, diameter
from tests.live import sipp

# Seconds after the granted expiry by which the HSS knows and both stores are clean: the
# usrloc timers run every 10 s (ims_usrloc_scscf, ims_usrloc_pcscf timer_interval), the S-CSCF's
# registration timer every 5 s (htable timer_interval).
CLEANUP_BOUND = 45
# Past the expiry, long enough for a timer item wrongly left for grace to have fired.
TIMER_SETTLE = 15


def kamcmd(core, role: str, *args: str) -> str:
    sock = f"unix:{core.workdir / role / 'kamailio_ctl'}"
    result = subprocess.run(
        core.ns.prefix() + debian_root.command(["kamcmd", "-s", sock, *args]), capture_output=True, text=True, timeout=10
    )
    return result.stdout + result.stderr


def scscf_holds(core, impu: str) -> bool:
    return "expires" in kamcmd(core, "scscf", "ulscscf.showimpu", impu)


def pcscf_rows(core, ue: sipp.Ue) -> list[str]:
    return [k for k in core.valkey.cli("pcscf", "--scan", "--pattern", "location:entry::*").split() if f"@{ue.address}:" in k]


def sars_of(core, ue: sipp.Ue) -> list[cx_hss.CxRequest]:
    return [r for r in core.hss.requests_of("SAR") if r.user_name == ue.impi]


@dataclass
class Lapse:
    call: object  # the SIPp run of the call to the lapsed UE
    cleaned_after: float  # seconds from the expiry until both stores were clean (or the bound)
    scscf: str  # what the S-CSCF lists for the IMPU at the end
    pcscf_rows: list[str]
    expired_at: float  # wall clock (time.time(), as the HSS double stamps requests)
    erin_sars: list[cx_hss.CxRequest]
    erin_state: cx_hss.RegState
    grace_sars: list[cx_hss.CxRequest]
    alice_sars: list[cx_hss.CxRequest]


def timeout_sars(sars: list[cx_hss.CxRequest]) -> list[cx_hss.CxRequest]:
    return [r for r in sars if r.server_assignment_type == cx_hss.SAT_TIMEOUT_DEREGISTRATION]


@pytest.fixture(scope="module")
def lapse(core) -> Lapse:
    """grace registers and de-registers; erin registers for the minimum and goes silent; alice
    calls erin after the expiry; then the HSS and the stores are watched until the timeout SAR
    came and both stores are clean, or CLEANUP_BOUND seconds after the expiry."""
    alice, erin, grace = core.users.alice, core.users.erin, core.users.grace
    domain = core.settings.ims_domain
    steps = ((alice, 600, "register"), (grace, 5, "register"), (grace, 0, "deregister"), (erin, 5, "register"))
    for ue, expires, name in steps:
        run = core.sipp(ue, sipp.register(ue, domain, expires=expires), f"{name}-{ue.name}-expiry")
        assert run.returncode == 0, run.explain()
    registered_at, registered_wall = time.monotonic(), time.time()
    (ok,) = run.received("SIP/2.0 200")
    granted = int(re.search(r"(?im)^Contact:.*;expires=(\d+)", ok).group(1))
    assert 0 < granted <= 60, ok
    assert scscf_holds(core, erin.impu) and pcscf_rows(core, erin)

    # The S-CSCF's own expiry is the granted time plus what it kept in hand (at most 60 s).
    expired_at = registered_at + 60
    time.sleep(max(0.0, expired_at + 1 - time.monotonic()))
    started = time.monotonic()
    call = core.sipp(alice, sipp.call_refused(alice, erin, domain, "480"), "call-lapsed-erin", timeout=20)
    print(f"final answer for the lapsed registration after {time.monotonic() - started:.2f} s")

    def settled() -> bool:
        return (
            time.monotonic() >= expired_at + TIMER_SETTLE
            and bool(timeout_sars(sars_of(core, erin)))
            and not scscf_holds(core, erin.impu)
            and not pcscf_rows(core, erin)
        )

    deadline = expired_at + CLEANUP_BOUND
    while time.monotonic() < deadline and not settled():
        time.sleep(1)
    cleaned_after = time.monotonic() - expired_at
    print(f"HSS told and both stores clean {cleaned_after:.0f} s after the expiry")
    return Lapse(
        call=call,
        cleaned_after=cleaned_after,
        scscf=kamcmd(core, "scscf", "ulscscf.showimpu", erin.impu),
        pcscf_rows=pcscf_rows(core, erin),
        expired_at=registered_wall + 60,
        erin_sars=sars_of(core, erin),
        erin_state=core.hss.registration_state(erin.impu),
        grace_sars=sars_of(core, grace),
        alice_sars=sars_of(core, alice),
    )


def test_a_call_to_a_lapsed_registration_gets_480_at_once(lapse):
    # Routed to the dead contact, the caller would get 408 after the P-CSCF's timer instead.
    assert lapse.call.returncode == 0, lapse.call.explain()


def test_both_stores_forget_a_lapsed_registration_within_the_bound(lapse):
    assert "expires" not in lapse.scscf, lapse.scscf
    assert lapse.pcscf_rows == []
    assert lapse.cleaned_after < CLEANUP_BOUND


def test_the_hss_is_told_with_a_timeout_sar(lapse, core):
    erin = core.users.erin
    scscf = core.settings.nf("scscf")
    (sar,) = timeout_sars(lapse.erin_sars)
    assert sar.public_identities == (erin.impu,)
    assert sar.user_name == erin.impi
    assert sar.server_name == f"sip:{scscf.fqdn}:{render_kamailio.SIP_PORT}"
    assert sar.peer == scscf.fqdn  # Origin-Host: the S-CSCF itself sent it
    assert sar.unknown_mandatory == ()
    # Accepted: every mandatory AVP there, IMPU and IMPI of one subscription, the assigned S-CSCF.
    assert sar.result_code == diameter.DIAMETER_SUCCESS, sar
    assert lapse.erin_state == cx_hss.RegState.NOT_REGISTERED
    # Not before the registration expired (1 s for the clocks' rounding), and within the bound.
    assert lapse.expired_at - 1 <= sar.time <= lapse.expired_at + CLEANUP_BOUND, (sar.time - lapse.expired_at)
    print(f"timeout SAR {sar.time - lapse.expired_at:.1f} s after the expiry")


def test_an_ended_or_live_registration_gets_no_timeout_sar(lapse):
    grace = [r.server_assignment_type for r in lapse.grace_sars]
    assert grace[-2:] == [cx_hss.SAT_REGISTRATION, cx_hss.SAT_USER_DEREGISTRATION], grace
    assert timeout_sars(lapse.grace_sars) == []
    assert timeout_sars(lapse.alice_sars) == []
