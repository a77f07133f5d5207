"""Live: IMS-AKA registration UE -> P-CSCF -> I-CSCF -> S-CSCF with the Cx HSS double."""

from __future__ import annotations

import os
import re

from tests.live import sipp


def header(message: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"(?im)^{re.escape(name)}:(.*)$", message)]


def test_aka_registration_gets_challenge_then_200_with_service_route(core):
    alice = core.users.alice
    domain = core.settings.ims_domain
    run = core.sipp(alice, sipp.register(alice, domain), "register-alice")
    assert run.returncode == 0, run.explain()

    (challenge,) = run.received("SIP/2.0 401")
    (www,) = header(challenge, "WWW-Authenticate")
    assert "AKAv1-MD5" in www and 'nonce="' in www, www
    # CK/IK are the P-CSCF's; they must not reach the UE.
    params = {m.group(1).lower() for m in re.finditer(r'(?:^Digest\s+|,\s*)([A-Za-z-]+)\s*=', www)}
    assert {"realm", "nonce", "algorithm"} <= params, www
    assert not params & {"ck", "ik"}, www

    (ok,) = run.received("SIP/2.0 200")
    scscf = core.settings.nf("scscf").fqdn
    assert any(f"sip:orig@{scscf}" in v for v in header(ok, "Service-Route")), ok
    assert any(alice.impu in v for v in header(ok, "P-Associated-URI")), ok

    assert core.hss.registration_state(alice.impu).value == "REGISTERED"
    assert [r.command for r in core.hss.requests if r.user_name == alice.impi][:3] == ["UAR", "MAR", "SAR"]


def pcscf_row_key(ue: sipp.Ue) -> str:
    """The P-CSCF's Valkey key for the contact `ue` registers from its own address: db_redis keys
    the location table by aor (the Contact URI) and received port (config/kamailio/pcscf
    kamailio.cfg, "location=entry:aor,received_port"). Other tests register the same user names
    from other addresses (test_overload's 127.0.3.x "alice"): only this key is this UE's."""
    return f"location:entry::sip:{ue.name}@{ue.address}:{ue.port}:{ue.port}"


def pcscf_row(core, key: str) -> dict[str, str]:
    # HGETALL: field, value, field, value ... one a line.
    words = core.valkey.cli("pcscf", "HGETALL", key).split("\n")[:-1]
    return dict(zip(words[0::2], words[1::2], strict=True))


def test_pcscf_keeps_the_contact_in_valkey(core):
    alice = core.users.alice
    run = core.sipp(alice, sipp.register(alice, core.settings.ims_domain), "register-alice-valkey")
    assert run.returncode == 0, run.explain()
    assert run.received("SIP/2.0 200"), run.explain()
    key = pcscf_row_key(alice)
    keys = core.valkey.cli("pcscf", "--scan", "--pattern", "location:entry::*").split()
    assert key in keys, keys
    row = pcscf_row(core, key)
    scscf = core.settings.nf("scscf").fqdn
    assert row.get("received") == alice.address and row.get("received_port") == str(alice.port), row
    assert row.get("reg_state") == "2", row  # PCONTACT_REGISTERED (ims_usrloc_pcscf usrloc.h)
    assert f"sip:orig@{scscf}" in row.get("service_routes", ""), row
    assert alice.impu in row.get("public_ids", ""), row


def test_wrong_key_never_gets_200(core):
    carol = core.users.carol
    run = core.sipp(carol, sipp.register_wrong_response(carol, core.settings.ims_domain, "403"), "register-carol-wrong-key")
    assert run.returncode == 0, run.explain()
    assert not run.received("SIP/2.0 200"), run.explain()
    assert core.hss.registration_state(carol.impu).value != "REGISTERED"


def test_unknown_impi_gets_403(core):
    mallory = core.users.mallory
    run = core.sipp(mallory, sipp.register_refused(mallory, core.settings.ims_domain, "403"), "register-unknown")
    assert run.returncode == 0, run.explain()


def test_reregistration_and_deregistration(core):
    bob = core.users.bob
    domain = core.settings.ims_domain
    for name in ("register-bob", "reregister-bob"):
        run = core.sipp(bob, sipp.register(bob, domain), name)
        assert run.returncode == 0, run.explain()
        assert run.received("SIP/2.0 200")
    assert core.hss.registration_state(bob.impu).value == "REGISTERED"

    run = core.sipp(bob, sipp.register(bob, domain, expires=0), "deregister-bob")
    assert run.returncode == 0, run.explain()
    (ok,) = run.received("SIP/2.0 200")
    assert "expires=0" in ok.lower() or "Contact:" not in ok, ok
    assert core.hss.registration_state(bob.impu).value != "REGISTERED"
    keys = core.valkey.cli("pcscf", "--scan", "--pattern", "location:entry::*").split()
    assert pcscf_row_key(bob) not in keys, keys
    # Deregistered: the P-CSCF refuses to route for it.
    refused = core.sipp(bob, sipp.call_refused(bob, core.users.alice, domain, "403"), "call-after-dereg")
    assert refused.returncode == 0, refused.explain()


def test_a_res_with_zero_bytes_registers(core):
    """AKA RES is binary: about 3 % of vectors hold a 0x00 byte, and a UE with such a vector
    must register like any other (SIPp 3.6 hashed RES as a C string and failed these)."""
    alice = core.users.alice
    milenage = core.hss.subscriber(alice.impi).milenage

    def rand_with_zero_in_res() -> bytes:
        while True:
            rand = os.urandom(16)
            if 0 in milenage.f2345(rand)[0]:
                return rand

    previous = core.hss.set_rand_source(rand_with_zero_in_res)
    try:
        run = core.sipp(alice, sipp.register(alice, core.settings.ims_domain), "register-alice-zero-res")
    finally:
        core.hss.set_rand_source(previous)
    assert run.returncode == 0, run.explain()
    assert run.received("SIP/2.0 200"), run.explain()
