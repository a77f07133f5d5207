"""Live: the caller identity the core asserts is one the calling UE registered (TS 24.229
5.2.6.3.3), whatever the UE writes in From or P-Preferred-Identity.

alice registers sip:alice and, in the same implicit registration set, sip:alice.office (the
HSS double's profile for her). She calls bob with a forged From or P-Preferred-Identity:
another subscriber's IMPU (carol's) or a name that belongs to no subscriber. bob must see
alice's default identity in P-Asserted-Identity; her own second identity, preferred, is
asserted as she asks. The S-CSCF itself refuses an originating request whose asserted
identity it has no registration for (a P-CSCF that did not check, or a peer that forges it).
"""

from __future__ import annotations

import re

import pytest

from components.render import kamailio as render_kamailio
from tests.live import sipp


def asserted(invite: str) -> list[str]:
    return re.findall(r"(?im)^P-Asserted-Identity:\s*<([^>]+)>", invite)


def forged_call(caller: sipp.Ue, callee: sipp.Ue, domain: str, *, from_uri: str | None = None, ppi: str | None = None) -> str:
    scenario = sipp.call(
        caller, callee, domain, extra_headers=f"P-Preferred-Identity: <{ppi}>" if ppi else "", hold_ms=100
    )
    if from_uri:
        scenario = scenario.replace(f"From: <{caller.impu}>;tag=", f"From: <{from_uri}>;tag=", 1)
    return scenario


@pytest.fixture(scope="module")
def registered(core):
    for ue in (core.users.alice, core.users.bob):
        run = core.sipp(ue, sipp.register(ue, core.settings.ims_domain), f"register-{ue.name}-identity")
        assert run.returncode == 0, run.explain()
    return core


def call_and_get_invite(core, name: str, **forgery) -> str:
    alice, bob = core.users.alice, core.users.bob
    callee = core.sipp(bob, sipp.answer(bob), f"answer-{name}", timeout=10, background=True)
    caller = core.sipp(alice, forged_call(alice, bob, core.settings.ims_domain, **forgery), f"call-{name}", timeout=10)
    callee.wait()
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()
    (invite,) = callee.received("INVITE ")
    return invite


FORGERIES = {
    "from-another-subscriber": lambda users, domain: {"from_uri": users.carol.impu},
    "from-no-subscriber": lambda users, domain: {"from_uri": f"sip:ceo@{domain}"},
    "ppi-another-subscriber": lambda users, domain: {"ppi": users.carol.impu},
    "ppi-no-subscriber": lambda users, domain: {"ppi": f"sip:ceo@{domain}"},
    "both-forged": lambda users, domain: {"from_uri": users.carol.impu, "ppi": f"sip:ceo@{domain}"},
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_identity_reaches_the_callee_as_the_callers_registered_one(registered, forgery):
    core = registered
    alice, carol = core.users.alice, core.users.carol
    domain = core.settings.ims_domain
    invite = call_and_get_invite(core, f"forged-{forgery}", **FORGERIES[forgery](core.users, domain))
    assert asserted(invite) == [alice.impu], invite
    for forged in (carol.impu, f"sip:ceo@{domain}"):
        assert f"P-Asserted-Identity: <{forged}>" not in invite, invite
    assert "P-Preferred-Identity" not in invite, invite


def test_the_callers_own_identities_are_asserted_as_asked(registered):
    core = registered
    alice = core.users.alice
    (office,) = alice.aliases
    assert asserted(call_and_get_invite(core, "own-ppi-office", ppi=office)) == [office]
    assert asserted(call_and_get_invite(core, "own-from-office", from_uri=office)) == [office]
    assert asserted(call_and_get_invite(core, "own-default")) == [alice.impu]


def scscf_orig_invite(core, asserted_identity: str) -> str:
    """An originating INVITE straight to the S-CSCF's Service-Route (as a P-CSCF sends it),
    asserting `asserted_identity`; it must be refused with 403."""
    scscf = core.settings.nf("scscf")
    bob = core.users.bob
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="orig invite asserting {asserted_identity}">
  <send retrans="500">
    <![CDATA[
      INVITE sip:{bob.impi} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Route: <sip:orig@{scscf.fqdn}:{render_kamailio.SIP_PORT};lr>
      Max-Forwards: 70
      From: <{asserted_identity}>;tag=[pid]orig[call_number]
      To: <{bob.impu}>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:peer@[local_ip]:[local_port]>
      P-Asserted-Identity: <{asserted_identity}>
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="403"/>
  <send>
    <![CDATA[
      ACK sip:{bob.impi} SIP/2.0
      [last_Via:]
      Max-Forwards: 70
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


@pytest.mark.parametrize("who", ["no-subscriber", "unregistered-subscriber"])
def test_the_scscf_refuses_an_asserted_identity_it_has_no_registration_for(registered, who):
    core = registered
    domain = core.settings.ims_domain
    identity = f"sip:ceo@{domain}" if who == "no-subscriber" else core.users.carol.impu
    peer = sipp.Ue(name="mw-peer", impi=f"mw-peer@{domain}", k="x" * 16, op="x" * 16, amf="00", address="127.0.0.111")
    run = core.sipp(
        peer, scscf_orig_invite(core, identity), f"scscf-orig-{who}", timeout=5,
        target=f"{core.settings.nf('scscf').address}:{render_kamailio.SIP_PORT}",
    )
    assert run.returncode == 0, run.explain()
    (refusal,) = run.received("SIP/2.0 403")
    assert "not registered" in refusal.split("\r\n", 1)[0].lower() or "Forbidden" in refusal, refusal
