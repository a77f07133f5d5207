"""Live: originating iFC/ISC on the S-CSCF with a real SIP application server (SIPp).

dave's IMSSubscription (from the Cx HSS double's SAA) carries one iFC (TS 29.228 annex B /
CxDataType.xsd): Method INVITE AND SessionCase 0 (originating), towards the AS
`sip:as@127.0.0.120:5060`, DefaultHandling 0 (SESSION_CONTINUED). The AS is a SIPp proxy
on its own loopback address: it takes the INVITE, relays it back by the Route the S-CSCF gave
it (ims_isc's return mark `sip:iscmark@<S-CSCF>;lr;s=…;h=…;d=…;a=…`, TS 24.229 5.4.3.3) and
relays the answers back. The S-CSCF, recognising its mark (isc_from_as), resumes the iFC
evaluation after the one that fired and routes on to the callee. The AS does not
Record-Route: ACK and BYE go by the dialog's route set, past it.

A subscriber without iFC (alice) calls the same callee and nothing reaches the AS address.

dave, not carol: test_registration needs carol never registered. No S-CSCF change was needed:
Kamailio 6.0's isc_match_filter / isc_from_as("orig") in route[ORIG] work as shipped. The
S-CSCF record-routes on both passes (mo twice): needed when an AS stays in the dialog path.

SIPp 3.6.1 quirks met here: `<ereg search_in="hdr" header="Route:">` matched Record-Route, and
a header search returns only the first Via line; hence the whole-message regexps.
"""

from __future__ import annotations

import re
import socket
import time

from tests.live import sipp

AS_ADDRESS, AS_PORT = "127.0.0.120", 5060
AS_URI = f"sip:as@{AS_ADDRESS}:{AS_PORT}"
# SIPp plays the AS; it needs a Ue only for its own address and port (it never registers).
AS = sipp.Ue(name="as", impi="as@invalid", k="x" * 16, op="x" * 16, amf="00", address=AS_ADDRESS, port=AS_PORT)

ORIGINATING_INVITE_IFC = f"""
<InitialFilterCriteria>
  <Priority>0</Priority>
  <TriggerPoint>
    <ConditionTypeCNF>0</ConditionTypeCNF>
    <SPT><ConditionNegated>0</ConditionNegated><Group>0</Group><Method>INVITE</Method></SPT>
    <SPT><ConditionNegated>0</ConditionNegated><Group>0</Group><SessionCase>0</SessionCase></SPT>
  </TriggerPoint>
  <ApplicationServer>
    <ServerName>{AS_URI}</ServerName>
    <DefaultHandling>0</DefaultHandling>
  </ApplicationServer>
</InitialFilterCriteria>
"""


def as_proxy() -> str:
    """SIPp as an ISC application server acting as a proxy (TS 24.229 5.7.5).

    Takes the INVITE (100 Trying at once so the S-CSCF stops retransmitting), forwards it to
    the S-CSCF with its own Via on top and the Route the S-CSCF gave it minus its own entry
    (leaving the iscmark), then relays 180 and 200 downstream with the Vias it received (its own,
    the top one, removed). The body goes back unchanged.
    """
    return """<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="ISC application server (proxy)">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="^INVITE ([^ ]+) SIP/2.0" search_in="msg" check_it="true" assign_to="line,ruri"/>
      <ereg regexp="&lt;(sip:iscmark@[^&gt;]*)&gt;" search_in="msg" check_it="true" assign_to="route,isc_return"/>
      <ereg regexp="Via: [^[:cntrl:]]*([[:cntrl:]]+Via: [^[:cntrl:]]*)*" search_in="msg" check_it="true" assign_to="vias,via_tail"/>
      <ereg regexp=".*" search_in="body" check_it="true" assign_to="sdp"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      INVITE [$ruri] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [$vias]
      Route: <[$isc_return]>
      [last_Record-Route:]
      Max-Forwards: 60
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:]
      [last_P-Asserted-Identity:]
      [last_Content-Type:]
      Content-Length: [len]

      [$sdp]
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [$vias]
      [last_Record-Route:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:]
      Content-Length: 0

    ]]>
  </send>
  <recv response="200">
    <action>
      <ereg regexp=".*" search_in="body" check_it="true" assign_to="answer"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [$vias]
      [last_Record-Route:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:]
      [last_Content-Type:]
      Content-Length: [len]

      [$answer]
    ]]>
  </send>
  <Reference variables="route,line,via_tail"/>
</scenario>
"""


def header(message: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"(?im)^{re.escape(name)}:(.*)$", message)]


def register(core, *ues: sipp.Ue) -> None:
    for ue in ues:
        run = core.sipp(ue, sipp.register(ue, core.settings.ims_domain), f"register-{ue.name}-isc")
        assert run.returncode == 0, run.explain()


def call_through_the_application_server(core, caller: sipp.Ue, callee: sipp.Ue, name: str):
    """`caller` calls `callee` while the SIPp application server proxies what the S-CSCF sends
    it; every party's scenario must end well. Returns the runs (application server, callee)."""
    domain = core.settings.ims_domain
    app_server = core.sipp(AS, as_proxy(), f"isc-as-{name}", timeout=8, background=True)
    answered = core.sipp(callee, sipp.answer(callee), f"answer-{callee.name}-{name}", timeout=8, background=True)
    calling = core.sipp(caller, sipp.call(caller, callee, domain), f"call-{caller.name}-{name}", timeout=8)
    answered.wait()
    app_server.wait()
    for run in (calling, answered, app_server):
        assert run.returncode == 0, run.explain()
    return app_server, answered


def test_originating_invite_goes_through_the_application_server(core):
    dave, bob = core.users.dave, core.users.bob
    # dave's profile, as the HSS hands it over in the SAA of his registration.
    core.hss.subscriber(dave.impi).ifc_xml = ORIGINATING_INVITE_IFC
    register(core, dave, bob)

    app_server, callee = call_through_the_application_server(core, dave, bob, "isc")

    # The AS got dave's INVITE for bob, routed to it with the S-CSCF's return address after it.
    (at_as,) = app_server.received("INVITE ")
    assert at_as.startswith(f"INVITE sip:{bob.impi} SIP/2.0"), at_as
    scscf = core.settings.nf("scscf").fqdn
    (route,) = header(at_as, "Route")
    mark = re.fullmatch(rf"<{re.escape(AS_URI)};lr>, <sip:iscmark@{re.escape(scscf)}:\d+;lr;([^>]*)>", route)
    assert mark, route
    params = dict(p.split("=", 1) for p in mark.group(1).split(";"))
    # Resume after iFC 0; DefaultHandling 0; direction 0 = originating; the served user's IMPU.
    assert params["s"] == "1" and params["h"] == "0" and params["d"] == "0", route
    assert bytes.fromhex(params["a"]).decode() == dave.impu, route
    assert header(at_as, "P-Served-User") == [f"<{dave.impu}>;sescase=orig;regstate=reg"], at_as

    # Back from the AS, the S-CSCF routed it on: bob's INVITE went through the AS (its Via).
    (at_bob,) = callee.received("INVITE ")
    assert any(AS_ADDRESS in via for via in header(at_bob, "Via")), at_bob
    assert re.search(rf"(?m)^P-Asserted-Identity: <{re.escape(dave.impu)}>", at_bob), at_bob
    assert callee.received("BYE ")


def test_subscriber_without_ifc_never_reaches_the_application_server(core):
    alice, bob = core.users.alice, core.users.bob
    register(core, alice, bob)
    with core.ns.entered():
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind((AS_ADDRESS, AS_PORT))
    try:
        callee = core.sipp(bob, sipp.answer(bob), "answer-bob-no-isc", timeout=8, background=True)
        caller = core.sipp(alice, sipp.call(alice, bob, core.settings.ims_domain), "call-alice-no-isc", timeout=8)
        callee.wait()
        assert caller.returncode == 0, caller.explain()
        assert callee.returncode == 0, callee.explain()
        time.sleep(0.1)
        listener.setblocking(False)
        try:
            data = listener.recv(65535)
        except BlockingIOError:
            data = b""
        assert data == b"", data.decode(errors="replace")
    finally:
        listener.close()
