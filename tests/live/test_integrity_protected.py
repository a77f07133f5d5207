"""Live: only the P-CSCF says a REGISTER came integrity protected.

The S-CSCF de-registers without a new challenge a de-REGISTER that the P-CSCF received over the
UE's IPsec security associations (integrity-protected="ipsec-3gpp" in Authorization, TS 24.229
5.2.2.1 and 5.4.1.2.1; the vm tier proves that path). A UE that writes the parameter itself on
an unprotected Gm must get a challenge like any other, and stay registered: otherwise anyone
who knows a registered identity could de-register it.
"""

from __future__ import annotations

import pytest

from tests.doubles import cx_hss
from tests.live import sipp


@pytest.mark.parametrize("first_parameter", [False, True], ids=["claim-last", "claim-first"])
def test_a_ue_claiming_integrity_protection_is_challenged_and_stays_registered(core, first_parameter):
    bob = core.users.bob
    domain = core.settings.ims_domain
    run = core.sipp(bob, sipp.register(bob, domain), "register-bob-integrity")
    assert run.returncode == 0, run.explain()
    assert core.hss.registration_state(bob.impu).value == "REGISTERED"

    before = len(core.hss.requests_of("SAR"))
    forged = core.sipp(
        bob,
        sipp.deregister_claiming_integrity(bob, domain, first_parameter=first_parameter),
        f"deregister-bob-claiming-integrity-{'first' if first_parameter else 'last'}",
    )
    assert forged.returncode == 0, forged.explain()
    assert not forged.received("SIP/2.0 200"), forged.explain()
    assert core.hss.registration_state(bob.impu).value == "REGISTERED"
    sars = core.hss.requests_of("SAR")[before:]
    assert all(r.server_assignment_type != cx_hss.SAT_USER_DEREGISTRATION for r in sars), sars
