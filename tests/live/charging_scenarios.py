"""SIPp scenarios of the charging tests that tests/live/sipp.py does not have: a caller whose
call the network ends (the S-CSCF's BYE when the credit runs out)."""

from __future__ import annotations

from tests.live.sipp import SDP, Ue


def call_cut_off(caller: Ue, callee: Ue, *, wait_bye_ms: int) -> str:
    """UAC: INVITE, 200, ACK, then wait up to `wait_bye_ms` for the network's BYE and answer it.

    SIPp exits non-zero if no BYE comes in time: a call that is not cut off fails the scenario.
    """
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="call {caller.name} to {callee.name}, cut off by the network">
  <send retrans="500">
    <![CDATA[
      INVITE sip:{callee.impi} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <{caller.impu}>;tag=[pid]inv[call_number]
      To: <{callee.impu}>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{caller.name}@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      {SDP}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      Max-Forwards: 70
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:{caller.name}@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv request="BYE" timeout="{wait_bye_ms}"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""
