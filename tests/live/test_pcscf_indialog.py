"""Live: an in-dialog request on Gm is taken only from the UE side of a dialog the P-CSCF holds.

The P-CSCF's Record-Route user part names the leg (mo/mt), and a UE writes its own Route
set: before, an in-dialog request (with a To tag) on the Gm port that named our `mt` Route went
straight to the callee's contact, as if the core had sent it. Now the P-CSCF checks the
dialog (ims_dialog), which side sent the request (From tag against the recorded ftag) and
the socket it came in on (Gm for the UE of the leg, Mw for the core), and that a request from
Gm still has a core hop to go to. While a real call alice -> bob is up, mallory (never
registered) sends forged BYEs to the Gm port; each is refused with 403, neither UE gets it,
and the call's own ACK and BYE still pass.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from components.render import kamailio as render_kamailio
from tests.live import sipp


def blocks(messages: str, kind: str) -> list[str]:
    """SIPp trace messages of one kind ("received"/"sent"), each from its start line."""
    found = []
    for block in re.split(r"(?m)^-{20,} .*$", messages):
        head, _, message = block.strip("\n").partition("\n")
        if kind in head:
            found.append(message.lstrip("\n"))
    return found


def header(message: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"(?im)^{re.escape(name)}:(.*)$", message.split("\n\n", 1)[0])]


def tag(value: str) -> str:
    return re.search(r";tag=([^;>\s]+)", value).group(1)


def forged_bye(forged: str, invite: str, to_tag: str, mallory, alice, bob, pcscf) -> str:
    """A BYE as mallory writes it, from what bob's INVITE shows of the real dialog."""
    call_id, from_, to = header(invite, "Call-ID")[0], header(invite, "From")[0], header(invite, "To")[0]
    record_routes = [r.strip() for rr in header(invite, "Record-Route") for r in rr.split(",")]
    to = f"{to};tag={to_tag}"
    bob_contact = f"sip:{bob.name}@{bob.address}:{bob.port}"
    alice_contact = f"sip:{alice.name}@{alice.address}:{alice.port}"
    if forged == "copied-mt-route":
        # What the core would send bob on Mw: the P-CSCF's two mt Record-Routes, alice's tags.
        ruri, routes, headers = bob_contact, [r for r in record_routes if r.startswith("<sip:mt@" + pcscf.address)], (from_, to)
    elif forged == "made-up-mt-route":
        ruri, routes = bob_contact, [f"<sip:mt@{pcscf.address}:{render_kamailio.SIP_PORT};lr>"]
        headers, call_id = (f"<{alice.impu}>;tag=made-up-1", f"<{bob.impu}>;tag=made-up-2"), "made-up@mallory"
    elif forged == "made-up-dialog":
        # As the caller of a call that does not exist, with a hop past us straight to bob.
        routes = [f"<sip:mo@{pcscf.address}:{render_kamailio.SIP_PORT};lr;ftag=made-up-1>", f"<{bob_contact};lr>"]
        ruri, headers, call_id = bob_contact, (f"<{alice.impu}>;tag=made-up-1", f"<{bob.impu}>;tag=made-up-2"), "made-up@mallory"
    else:  # "copied-as-callee": bob's whole route set and tags, towards alice through the core
        ruri, routes, headers = alice_contact, record_routes, (to, from_)
    lines = [
        f"BYE {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP {mallory.address}:{mallory.port};branch=z9hG4bK-forged-{forged};rport",
        *(f"Route: {r}" for r in routes),
        "Max-Forwards: 70",
        f"From: {headers[0]}",
        f"To: {headers[1]}",
        f"Call-ID: {call_id}",
        "CSeq: 7 BYE",
        "Content-Length: 0",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# The forgery and the check that refuses it (the 403's reason phrase).
FORGERIES = {
    "copied-mt-route": "Route reserved for the core",
    "made-up-mt-route": "Route reserved for the core",
    "made-up-dialog": "Not in a dialog of ours",
    "copied-as-callee": "You must register first",
}


@pytest.mark.parametrize("forged", sorted(FORGERIES))
def test_forged_in_dialog_request_on_gm_is_refused_and_the_call_goes_on(core, forged):
    alice, bob, mallory = core.users.alice, core.users.bob, core.users.mallory
    domain = core.settings.ims_domain
    for ue in (alice, bob):
        run = core.sipp(ue, sipp.register(ue, domain), f"register-{ue.name}-indialog-{forged}")
        assert run.returncode == 0, run.explain()

    callee = core.sipp(bob, sipp.answer(bob), f"answer-bob-indialog-{forged}", timeout=20, background=True)
    caller = core.sipp(alice, sipp.call(alice, bob, domain, hold_ms=2500), f"call-alice-indialog-{forged}", background=True)
    try:
        wait_for(lambda: any(m.startswith("ACK ") for m in blocks(callee.messages, "received")), 10, "bob's ACK")

        invite = next(m for m in blocks(callee.messages, "received") if m.startswith("INVITE "))
        ok = next(m for m in blocks(callee.messages, "sent") if m.startswith("SIP/2.0 200"))
        pcscf = core.settings.nf("pcscf")
        message = forged_bye(forged, invite, tag(header(ok, "To")[0]), mallory, alice, bob, pcscf)
        with core.ns.entered():
            attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            attacker.bind((mallory.address, mallory.port))
            attacker.settimeout(2)
            attacker.sendto(message.encode(), (pcscf.address, render_kamailio.SIP_PORT))
            answer = attacker.recv(65535).decode(errors="replace")
        finally:
            attacker.close()
        assert answer.startswith("SIP/2.0 403 ") and FORGERIES[forged] in answer.splitlines()[0], answer

        caller.wait()
        callee.wait()
    finally:
        for run in (caller, callee):  # a failed check must not leave SIPp holding the UE ports
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()
    # Each UE got exactly the requests of the real call: bob one BYE (alice's), alice none.
    assert [m.split(" ", 1)[0] for m in blocks(callee.messages, "received") if not m.startswith("SIP/")] == [
        "INVITE", "ACK", "BYE"
    ]
    assert all(m.startswith("SIP/") for m in blocks(caller.messages, "received")), caller.messages
    (bye,) = [m for m in blocks(callee.messages, "received") if m.startswith("BYE ")]
    assert "forged" not in bye, bye
