"""SIPp UE scenarios for the live tier, generated per user (SIPp cannot nest [fieldN] in
[authentication ...], and takes AKA K/OP only as raw 16-character strings in the scenario).

Each function returns scenario XML. Assertions on what the UE saw are made in Python on the
SIPp message trace (`-trace_msg`), not in SIPp.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr


@dataclass(frozen=True)
class Ue:
    name: str  # user part of the IMPU, e.g. "alice"
    impi: str  # e.g. "alice@ims.mnc001.mcc001.3gppnetwork.org"
    k: str  # 16 printable characters, used as raw bytes by SIPp and the HSS double
    op: str  # 16 printable characters (OP; SIPp derives OPc)
    amf: str  # 2 printable characters
    address: str  # the UE's own loopback address
    port: int = 5060
    # Further IMPUs of the same implicit registration set (the HSS profile lists them).
    aliases: tuple[str, ...] = ()

    @property
    def impu(self) -> str:
        return f"sip:{self.impi}"


def _auth(ue: Ue, k: str | None = None) -> str:
    return f"[authentication username={ue.impi} aka_K={k or ue.k} aka_OP={ue.op} aka_AMF={ue.amf}]"


def _no_response(ue: Ue, domain: str) -> str:
    """Digest parameters of a first REGISTER: the IMPI, nothing to answer yet (TS 24.229 5.1.1.2)."""
    return f'username="{ue.impi}", realm="{domain}", nonce="", uri="sip:{domain}", response=""'


def _register(ue: Ue, domain: str, cseq: int, expires: int, authorization: str) -> str:
    return f"""
  <send retrans="500">
    <![CDATA[
      REGISTER sip:{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <{ue.impu}>;tag=[pid]reg[call_number]
      To: <{ue.impu}>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:{ue.name}@[local_ip]:[local_port]>;expires={expires}
      Expires: {expires}
      Supported: path
      {authorization}
      User-Agent: sipp-ue-{ue.name}
      Content-Length: 0

    ]]>
  </send>
"""


def register(ue: Ue, domain: str, *, expires: int = 600, k: str | None = None, expect_final: str = "200") -> str:
    """Initial REGISTER (empty Authorization with the IMPI), 401 challenge, AKA answer.

    `k` overrides the key the UE uses (a wrong key); `expect_final` is the code the second
    REGISTER must get ("200", or e.g. "401|403" when it must fail).
    """
    first = _register(
        ue, domain, 1, expires,
        f"Authorization: Digest {_no_response(ue, domain)}",
    )
    second = _register(ue, domain, 2, expires, _auth(ue, k))
    finals = "".join(
        f'  <recv response="{code}" optional="true" next="end"/>\n' for code in expect_final.split("|")[:-1]
    )
    last = expect_final.split("|")[-1]
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="register {ue.name}">
{first}
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
{second}
  <recv response="100" optional="true"/>
{finals}  <recv response="{last}"/>
  <label id="end"/>
</scenario>
"""


def register_refused(
    ue: Ue, domain: str, code: str = "403", *, expires: int = 600, authorization: str | None = None
) -> str:
    """A REGISTER that must get `code` at once (403 for an unknown IMPI; a 401 instead of the
    200 a claim in `authorization`, the whole header value, asks for)."""
    authorization = authorization or f"Digest {_no_response(ue, domain)}"
    first = _register(ue, domain, 1, expires, f"Authorization: {authorization}")
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="register refused {ue.name}">
{first}
  <recv response="100" optional="true"/>
  <recv response="{code}"/>
</scenario>
"""


SDP = """v=0
      o=- 4242 4242 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendrecv
"""


def call(
    caller: Ue, callee: Ue, domain: str, *, extra_headers: str = "", hold_ms: int = 500, rtp_stream: str | None = None,
    late_offer: bool = False,
) -> str:
    """UAC: INVITE with SDP, 180/200, ACK, BYE.

    `late_offer`: the INVITE has no SDP, the 200 brings the offer and the ACK the answer.

    `rtp_stream`: a raw 8-bit PCMU file SIPp sends as RTP (20 ms packets, looped) from the ACK
    until the BYE, to the address of the 200's SDP; the offer then names SIPp's rtpstream port.
    """
    # No empty line when there are none: SIPp would end the headers there, and the SDP would
    # become an untyped body the P-CSCF cannot see as an offer.
    headers = "".join(f"{h}\n      " for h in extra_headers.splitlines() if h)
    sdp = SDP.replace("[media_port]", "[rtpstream_audio_port]") if rtp_stream else SDP
    typed = "Content-Type: application/sdp\n      Content-Length: [len]\n\n      "
    empty = "Content-Length: 0\n\n"
    invite_body, ack_body = (empty, typed + sdp) if late_offer else (typed + sdp, empty)
    stream = (
        f'  <nop><action><exec rtp_stream="{rtp_stream},-1,0"/></action></nop>\n' if rtp_stream else ""
    )
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="call {caller.name} to {callee.name}">
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
      {headers}{invite_body}
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
      {ack_body}
    ]]>
  </send>
{stream}  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      Max-Forwards: 70
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:{caller.name}@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


def call_refused(
    caller: Ue, callee: Ue, domain: str, code: str = "403", *, request_uri: str | None = None, extra_headers: str = ""
) -> str:
    """UAC: an INVITE that must be refused with `code` (then the ACK for it).

    `request_uri` replaces the callee's IMPU (e.g. its registered contact); `extra_headers`
    are added as they are (e.g. a forged Route).
    """
    ruri = request_uri or f"sip:{callee.impi}"
    # No empty line when there are none: SIPp would end the headers there.
    headers = "".join(f"{h}\n      " for h in extra_headers.splitlines() if h)
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="call refused {caller.name}">
  <send retrans="500">
    <![CDATA[
      INVITE {ruri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <{caller.impu}>;tag=[pid]inv[call_number]
      To: <{callee.impu}>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{caller.name}@[local_ip]:[local_port]>
      {headers}Content-Type: application/sdp
      Content-Length: [len]

      {SDP}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="{code}"/>
  <send>
    <![CDATA[
      ACK {ruri} SIP/2.0
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


def answer(callee: Ue) -> str:
    """UAS: receive the INVITE, ring, answer with SDP, take the ACK and the BYE."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="answer {callee.name}">
  <recv request="INVITE" crlf="true" rrs="true"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ans[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:{callee.name}@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ans[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:{callee.name}@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      {SDP}
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
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


def attr(value: str) -> str:
    return quoteattr(value)


def register_wrong_response(ue: Ue, domain: str, expect_final: str = "403") -> str:
    """Answer the AKA challenge with a response no key produced (what a UE with the wrong K
    sends). SIPp itself refuses to answer when the AUTN MAC fails, so the answer is forged:
    the real nonce from the 401, a made-up digest response."""
    first = _register(
        ue, domain, 1, 600,
        f"Authorization: Digest {_no_response(ue, domain)}",
    )
    forged = (
        f'Authorization: Digest username="{ue.impi}", realm="{domain}", nonce="[$nonce]", uri="sip:{domain}", '
        'response="0123456789abcdef0123456789abcdef", algorithm=AKAv1-MD5, qop=auth, nc=00000001, cnonce="0a4f113b"'
    )
    second = _register(ue, domain, 2, 600, forged)
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="register wrong response {ue.name}">
{first}
  <recv response="100" optional="true"/>
  <recv response="401">
    <action>
      <ereg regexp="nonce=&quot;([^&quot;]+)&quot;" search_in="hdr" header="WWW-Authenticate:" assign_to="whole,nonce"/>
    </action>
  </recv>
{second}
  <recv response="100" optional="true"/>
  <recv response="{expect_final}"/>
  <Reference variables="whole"/>
</scenario>
"""


def call_released(caller: Ue, callee: Ue) -> str:
    """UAC of a call the network releases once it is answered: INVITE with SDP, 200, ACK,
    then the network's BYE, answered 200."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="call {caller.name} to {callee.name}, released by the network">
  <send retrans="500">
    <![CDATA[
      INVITE sip:{callee.impi} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <{caller.impu}>;tag=[pid]rel[call_number]
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
{_answer_bye()}
</scenario>
"""


def answer_released(callee: Ue) -> str:
    """UAS of a call the network releases once it is answered: ring, answer with SDP, then
    the network's BYE (which may overtake the caller's ACK), answered 200."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="answer {callee.name}, released by the network">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ans[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:{callee.name}@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ans[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:{callee.name}@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      {SDP}
    ]]>
  </send>
  <recv request="ACK" optional="true" next="bye"/>
{_answer_bye()}
</scenario>
"""


def _answer_bye() -> str:
    return """  <label id="bye"/>
  <recv request="BYE"/>
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
  </send>"""


def deregister_claiming_integrity(ue: Ue, domain: str, *, first_parameter: bool = False) -> str:
    """A de-REGISTER whose Authorization claims integrity-protected="ipsec-3gpp" (as its last
    parameter, or its first) and answers no challenge: what the P-CSCF alone may say (TS 24.229
    5.2.2.1). Expects a fresh 401."""
    claim = 'integrity-protected="ipsec-3gpp"'
    params = _no_response(ue, domain)
    authorization = f"Digest {claim}, {params}" if first_parameter else f"Digest {params}, {claim}"
    return register_refused(ue, domain, "401", expires=0, authorization=authorization)
