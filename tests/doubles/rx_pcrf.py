"""``RxPcrfTestDouble``: a PCRF stand-in on the Rx interface (TS 29.214, TS 29.213).

A threaded TCP Diameter server for live tests: the P-CSCF (Kamailio cdp + ims_qos) connects
to it as to a PCRF. It implements the PCRF side of:

- CER/CEA, DWR/DWA, DPR/DPA (RFC 6733); CEA advertises Vendor-Specific-Application-Id
  {Vendor-Id 10415, Auth-Application-Id 16777236} and Supported-Vendor-Id 10415.
- AAR/AAA (29.214 5.6.1/5.6.2, command 265): Rx-Request-Type INITIAL_REQUEST opens an Rx
  session, UPDATE_REQUEST needs an open one (else DIAMETER_UNKNOWN_SESSION_ID 5002). The
  answer is ``aar_policy(request)`` (default DIAMETER_SUCCESS): base codes go in Result-Code,
  the Rx codes of 29.214 5.5 (e.g. INVALID_SERVICE_INFORMATION 5061,
  REQUESTED_SERVICE_NOT_AUTHORIZED 5063) in Experimental-Result {10415, code}. A refused
  INITIAL_REQUEST opens no session.
- STR/STA (29.214 5.6.3/5.6.4, command 275): DIAMETER_SUCCESS and the session closes;
  DIAMETER_UNKNOWN_SESSION_ID for a session that is not open.
- PCRF-initiated ASR/ASA (274) and RAR/RAA (258): ``abort_session`` / ``reauth`` send them
  on the connection the session came from and return the answer.

Every AAA/STA carries Session-Id, Auth-Application-Id 16777236, Origin-Host, Origin-Realm.
Each request is recorded as an ``RxRequest``: command, session, Rx-Request-Type,
AF-Application-Identifier, Framed-IP-Address (the UE), Subscription-Id, Specific-Action,
Media-Component-Description with its Media-Sub-Component flows (Flow-Description IPFilterRule
strings, Flow-Usage), Termination-Cause, and the result answered.

A failure while answering is logged, kept in ``errors`` and answered with
DIAMETER_UNABLE_TO_COMPLY: no thread dies silently.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import diameter as d
from . import server as srv
from .server import Connection, DiameterServerDouble, ServedApplication

log = logging.getLogger("ims_core.tests.rx_pcrf")

VENDOR_3GPP = 10415
RX_APPLICATION_ID = 16777236

# Command codes (TS 29.214 5.6)
CMD_AA = 265
CMD_RE_AUTH = 258
CMD_SESSION_TERMINATION = 275
CMD_ABORT_SESSION = 274
REQUEST_NAMES = {CMD_AA: "AAR", CMD_RE_AUTH: "RAR", CMD_SESSION_TERMINATION: "STR", CMD_ABORT_SESSION: "ASR"}
COMMAND_NAMES = {
    **REQUEST_NAMES,
    **srv.BASE_COMMAND_NAMES,
}

# Base / IETF AVPs Rx uses (RFC 6733, RFC 4006, RFC 7155)
AVP_SESSION_TIMEOUT = 27
AVP_AUTH_GRACE_PERIOD = 276
AVP_AUTHORIZATION_LIFETIME = 291
AVP_FRAMED_IP_ADDRESS = 8  # RFC 7155: OctetString, the 4 address bytes
AVP_FRAMED_IPV6_PREFIX = 97
AVP_RE_AUTH_REQUEST_TYPE = 285
AVP_TERMINATION_CAUSE = 295
AVP_SUBSCRIPTION_ID = 443  # RFC 4006
AVP_SUBSCRIPTION_ID_DATA = 444
AVP_SUBSCRIPTION_ID_TYPE = 450
IETF_AVP_CODES = frozenset(
    {AVP_SESSION_TIMEOUT, AVP_AUTH_GRACE_PERIOD, AVP_AUTHORIZATION_LIFETIME, AVP_FRAMED_IP_ADDRESS, AVP_FRAMED_IPV6_PREFIX, AVP_RE_AUTH_REQUEST_TYPE, AVP_TERMINATION_CAUSE,
     AVP_SUBSCRIPTION_ID, AVP_SUBSCRIPTION_ID_DATA, AVP_SUBSCRIPTION_ID_TYPE}
)

# 3GPP AVPs (TS 29.214 5.3, vendor 10415)
AVP_ABORT_CAUSE = 500
AVP_ACCESS_NETWORK_CHARGING_IDENTIFIER = 502
AVP_AF_APPLICATION_IDENTIFIER = 504
AVP_AF_CHARGING_IDENTIFIER = 505
AVP_FLOW_DESCRIPTION = 507
AVP_FLOW_NUMBER = 509
AVP_FLOWS = 510
AVP_FLOW_STATUS = 511
AVP_FLOW_USAGE = 512
AVP_SPECIFIC_ACTION = 513
AVP_MAX_REQUESTED_BANDWIDTH_DL = 515
AVP_MAX_REQUESTED_BANDWIDTH_UL = 516
AVP_MEDIA_COMPONENT_DESCRIPTION = 517
AVP_MEDIA_COMPONENT_NUMBER = 518
AVP_MEDIA_SUB_COMPONENT = 519
AVP_MEDIA_TYPE = 520
AVP_RR_BANDWIDTH = 521
AVP_RS_BANDWIDTH = 522
AVP_SIP_FORKING_INDICATION = 523
AVP_CODEC_DATA = 524
AVP_SERVICE_URN = 525
AVP_SERVICE_INFO_STATUS = 527
AVP_AF_SIGNALLING_PROTOCOL = 529
AVP_RX_REQUEST_TYPE = 533
KNOWN_3GPP_AVPS = frozenset(range(500, 560)) | {628, 629, 630, 1027, 1032}  # + Supported-Features, IP-CAN/RAT-Type

# Enumerations (TS 29.214 5.3 / RFC 4006)
RX_REQUEST_INITIAL = 0
RX_REQUEST_UPDATE = 1
RX_REQUEST_PCSCF_RESTORATION = 2
MEDIA_TYPES = {0: "audio", 1: "video", 2: "data", 3: "application", 4: "control", 5: "text", 6: "message",
               0xFFFFFFFF: "other"}
FLOW_USAGE_NO_INFORMATION = 0
FLOW_USAGE_RTCP = 1
FLOW_USAGE_AF_SIGNALLING = 2
SUBSCRIPTION_ID_TYPES = {0: "E164", 1: "IMSI", 2: "SIP_URI", 3: "NAI", 4: "PRIVATE"}
ABORT_CAUSE_BEARER_RELEASED = 0
ABORT_CAUSE_INSUFFICIENT_SERVER_RESOURCES = 1
ABORT_CAUSE_INSUFFICIENT_BEARER_RESOURCES = 2
SPECIFIC_ACTION_INDICATION_OF_LOSS_OF_BEARER = 2
SPECIFIC_ACTION_INDICATION_OF_RELEASE_OF_BEARER = 4

# Result codes: base (RFC 6733) in Result-Code, Rx ones (29.214 5.5) in Experimental-Result.
DIAMETER_UNKNOWN_SESSION_ID = 5002
REQUESTED_SERVICE_TEMPORARILY_NOT_AUTHORIZED = 4261
INVALID_SERVICE_INFORMATION = 5061
FILTER_RESTRICTIONS = 5062
REQUESTED_SERVICE_NOT_AUTHORIZED = 5063
DUPLICATED_AF_SESSION = 5064
IP_CAN_SESSION_NOT_AVAILABLE = 5065
UNAUTHORIZED_NON_EMERGENCY_SESSION = 5066
UNAUTHORIZED_SPONSORED_DATA_CONNECTIVITY = 5067
TEMPORARY_NETWORK_FAILURE = 5068
RX_EXPERIMENTAL_RESULT_CODES = frozenset({4261, *range(5061, 5069)})

DEFAULT_ORIGIN_HOST = "pcrf.epc.mnc001.mcc001.3gppnetwork.org"
DEFAULT_ORIGIN_REALM = "epc.mnc001.mcc001.3gppnetwork.org"


@dataclass(frozen=True)
class MediaSubComponent:
    """Media-Sub-Component (29.214 5.3.12): one flow pair of a media component."""

    flow_number: int | None
    flow_descriptions: tuple[str, ...]  # IPFilterRule, e.g. "permit out 17 from 1.2.3.4 5000 to 5.6.7.8 6000"
    flow_usage: int | None
    flow_status: int | None


@dataclass(frozen=True)
class MediaComponent:
    """Media-Component-Description (29.214 5.3.11): one SDP m-line (or the AF signalling)."""

    number: int | None
    media_type: str | None
    sub_components: tuple[MediaSubComponent, ...]
    flow_status: int | None
    max_requested_bandwidth_ul: int | None
    max_requested_bandwidth_dl: int | None
    codec_data: tuple[str, ...]

    @property
    def flow_descriptions(self) -> tuple[str, ...]:
        return tuple(fd for sub in self.sub_components for fd in sub.flow_descriptions)

    @property
    def signalling(self) -> bool:
        return any(sub.flow_usage == FLOW_USAGE_AF_SIGNALLING for sub in self.sub_components)


@dataclass(frozen=True)
class RxRequest:
    """What the double received and answered, for tests to inspect."""

    command: str
    command_code: int
    time: float
    peer: str | None
    session_id: str | None
    rx_request_type: int | None
    af_application_id: str | None
    af_charging_id: str | None
    framed_ip: str | None
    subscription_ids: tuple[tuple[str, str], ...]  # (type name, data)
    specific_actions: tuple[int, ...]
    media_components: tuple[MediaComponent, ...]
    service_urn: str | None
    termination_cause: int | None
    unknown_mandatory: tuple[tuple[int, int], ...]
    result_code: int | None = None
    request: d.Message | None = field(default=None, repr=False)
    answer: d.Message | None = field(default=None, repr=False)

    @property
    def flow_descriptions(self) -> tuple[str, ...]:
        return tuple(fd for mc in self.media_components for fd in mc.flow_descriptions)

    @property
    def signalling(self) -> bool:
        """An AAR for the AF signalling path (TS 29.214 4.4.5a): Flow-Usage AF_SIGNALLING."""
        return bool(self.media_components) and all(mc.signalling for mc in self.media_components)


class _Reject(Exception):
    def __init__(self, code: int, failed: d.Avp | None = None, why: str = ""):
        super().__init__(why or str(code))
        self.code = code
        self.failed = failed


def _u32(avps: list[d.Avp], code: int, vendor: int = VENDOR_3GPP) -> int | None:
    avp = next(d.find_all(avps, code, vendor), None)
    return avp.as_u32() if avp is not None else None


def _str(avps: list[d.Avp], code: int, vendor: int = VENDOR_3GPP) -> str | None:
    avp = next(d.find_all(avps, code, vendor), None)
    return avp.data.decode("utf-8", "replace") if avp is not None else None


def _framed_ip(msg: d.Message) -> str | None:
    avp = msg.find(AVP_FRAMED_IP_ADDRESS)
    if avp is not None and len(avp.data) == 4:
        return socket.inet_ntop(socket.AF_INET, avp.data)
    avp = msg.find(AVP_FRAMED_IPV6_PREFIX)
    if avp is not None and len(avp.data) >= 2:  # Reserved(1) Prefix-Length(1) Prefix
        return socket.inet_ntop(socket.AF_INET6, avp.data[2:].ljust(16, b"\x00")) + f"/{avp.data[1]}"
    return None


def parse_media_component(avp: d.Avp) -> MediaComponent:
    inner = avp.as_grouped()
    subs = []
    for sub in d.find_all(inner, AVP_MEDIA_SUB_COMPONENT, VENDOR_3GPP):
        s = sub.as_grouped()
        subs.append(
            MediaSubComponent(
                flow_number=_u32(s, AVP_FLOW_NUMBER),
                flow_descriptions=tuple(a.as_str() for a in d.find_all(s, AVP_FLOW_DESCRIPTION, VENDOR_3GPP)),
                flow_usage=_u32(s, AVP_FLOW_USAGE),
                flow_status=_u32(s, AVP_FLOW_STATUS),
            )
        )
    media_type = _u32(inner, AVP_MEDIA_TYPE)
    return MediaComponent(
        number=_u32(inner, AVP_MEDIA_COMPONENT_NUMBER),
        media_type=None if media_type is None else MEDIA_TYPES.get(media_type, str(media_type)),
        sub_components=tuple(subs),
        flow_status=_u32(inner, AVP_FLOW_STATUS),
        max_requested_bandwidth_ul=_u32(inner, AVP_MAX_REQUESTED_BANDWIDTH_UL),
        max_requested_bandwidth_dl=_u32(inner, AVP_MAX_REQUESTED_BANDWIDTH_DL),
        codec_data=tuple(a.data.decode("utf-8", "replace") for a in d.find_all(inner, AVP_CODEC_DATA, VENDOR_3GPP)),
    )


def parse_request(msg: d.Message) -> RxRequest:
    """An ``RxRequest`` (without result) from an Rx request message."""
    subscription_ids = []
    for sid in msg.find_all(AVP_SUBSCRIPTION_ID):
        inner = sid.as_grouped()
        kind = _u32(inner, AVP_SUBSCRIPTION_ID_TYPE, 0)
        data = _str(inner, AVP_SUBSCRIPTION_ID_DATA, 0)
        subscription_ids.append((SUBSCRIPTION_ID_TYPES.get(kind, str(kind)), data or ""))
    unknown = srv.unknown_mandatory(msg.avps, KNOWN_3GPP_AVPS, IETF_AVP_CODES)
    return RxRequest(
        command=COMMAND_NAMES.get(msg.command_code, str(msg.command_code)),
        command_code=msg.command_code,
        time=time.time(),
        peer=msg.str_of(d.AVP_ORIGIN_HOST),
        session_id=msg.session_id,
        rx_request_type=msg.u32_of(AVP_RX_REQUEST_TYPE, VENDOR_3GPP),
        af_application_id=_str(msg.avps, AVP_AF_APPLICATION_IDENTIFIER),
        af_charging_id=_str(msg.avps, AVP_AF_CHARGING_IDENTIFIER),
        framed_ip=_framed_ip(msg),
        subscription_ids=tuple(subscription_ids),
        specific_actions=tuple(a.as_u32() for a in msg.find_all(AVP_SPECIFIC_ACTION, VENDOR_3GPP)),
        media_components=tuple(
            parse_media_component(a) for a in msg.find_all(AVP_MEDIA_COMPONENT_DESCRIPTION, VENDOR_3GPP)
        ),
        service_urn=_str(msg.avps, AVP_SERVICE_URN),
        termination_cause=msg.u32_of(AVP_TERMINATION_CAUSE),
        unknown_mandatory=unknown,
        request=msg,
    )


def accept_all(_request: RxRequest) -> int:
    return d.DIAMETER_SUCCESS


def refuse_media(code: int = REQUESTED_SERVICE_NOT_AUTHORIZED) -> Callable[[RxRequest], int]:
    """A policy that authorises the AF signalling AAR but refuses every media AAR with ``code``."""

    def policy(request: RxRequest) -> int:
        return d.DIAMETER_SUCCESS if request.signalling or not request.media_components else code

    return policy


class RxPcrfTestDouble(DiameterServerDouble[RxRequest]):
    """PCRF stand-in on Rx; see the module docstring for the behaviour."""

    application = ServedApplication(RX_APPLICATION_ID, "Rx", "PCRF", COMMAND_NAMES, log)

    def __init__(
        self,
        *,
        origin_host: str = DEFAULT_ORIGIN_HOST,
        origin_realm: str = DEFAULT_ORIGIN_REALM,
        bind_address: str = "127.0.0.1",
        port: int = 3868,
        aar_policy: Callable[[RxRequest], int] = accept_all,
    ):
        super().__init__(
            origin_host=origin_host,
            origin_realm=origin_realm,
            bind_address=bind_address,
            port=port,
            product_name="ims-core Rx test double",
        )
        self.aar_policy = aar_policy
        self._sessions: dict[str, Connection] = {}  # open Rx sessions -> the connection they came on
        self._pending: dict[int, list] = {}  # hop-by-hop of our requests -> [event, answer]

    # --- inspection ----------------------------------------------------------------
    def _no_request_message(self, command: str, timeout: float) -> str:
        seen = [(r.command, r.session_id, r.result_code) for r in self._records]
        return f"no matching {command} within {timeout}s; got {seen}"

    @property
    def open_sessions(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    # --- PCRF-initiated requests ---------------------------------------------------
    def abort_session(self, session_id: str, abort_cause: int = ABORT_CAUSE_BEARER_RELEASED, timeout: float = 5.0) -> d.Message:
        """Send ASR (29.214 5.6.7) for an open session; returns the ASA."""
        return self._send_request(
            session_id, CMD_ABORT_SESSION, [d.Avp.u32(AVP_ABORT_CAUSE, abort_cause, VENDOR_3GPP)], timeout
        )

    def reauth(self, session_id: str, specific_actions: tuple[int, ...], timeout: float = 5.0) -> d.Message:
        """Send RAR (29.214 5.6.5) with Specific-Action(s) for an open session; returns the RAA."""
        extra = [d.Avp.u32(AVP_RE_AUTH_REQUEST_TYPE, 0)]  # AUTHORIZE_ONLY
        extra += [d.Avp.u32(AVP_SPECIFIC_ACTION, a, VENDOR_3GPP) for a in specific_actions]
        return self._send_request(session_id, CMD_RE_AUTH, extra, timeout)

    def _send_request(self, session_id: str, command: int, extra: list[d.Avp], timeout: float) -> d.Message:
        with self._lock:
            conn = self._sessions.get(session_id)
        if conn is None or not conn.open:
            raise KeyError(f"no open Rx session {session_id!r} (open: {self.open_sessions})")
        req = d.Message(command, RX_APPLICATION_ID, request=True, proxiable=True)
        req.add(
            d.Avp.utf8(d.AVP_SESSION_ID, session_id),
            *self.local.origin_avps(),
            d.Avp.utf8(d.AVP_DESTINATION_REALM, conn.peer_realm or ""),
            d.Avp.utf8(d.AVP_DESTINATION_HOST, conn.peer_host or ""),
            d.Avp.u32(d.AVP_AUTH_APPLICATION_ID, RX_APPLICATION_ID),
            *extra,
        )
        slot: list = [threading.Event(), None]
        with self._lock:
            self._pending[req.hop_by_hop] = slot
        try:
            conn.send(req)
            if not slot[0].wait(timeout):
                raise TimeoutError(f"no answer to {REQUEST_NAMES[command]} for {session_id} within {timeout}s")
        finally:
            with self._lock:
                self._pending.pop(req.hop_by_hop, None)
        return slot[1]

    # --- DiameterServerDouble hooks --------------------------------------------------
    def _on_answer(self, conn: Connection, msg: d.Message) -> None:
        with self._lock:
            slot = self._pending.get(msg.hop_by_hop)
        if slot is None:
            log.info("Rx PCRF double: ignoring unexpected answer %s from %s", msg.command_code, conn.addr)
        else:
            slot[1] = msg
            slot[0].set()

    def _application_request(self, conn: Connection, msg: d.Message) -> d.Message:
        if msg.command_code not in (CMD_AA, CMD_SESSION_TERMINATION):
            return self.base.error_answer(msg, d.DIAMETER_COMMAND_UNSUPPORTED)
        return self._rx(conn, msg)

    # --- Rx --------------------------------------------------------------------------
    _REQUIRED = srv.required_avps((d.AVP_AUTH_APPLICATION_ID, 0))

    def _rx(self, conn: Connection, msg: d.Message) -> d.Message:
        rec = parse_request(msg)
        if rec.unknown_mandatory:
            log.warning("Rx PCRF double: unknown M-bit AVPs in %s: %s", rec.command, rec.unknown_mandatory)
        failed = None
        try:
            missing = [(c, v) for c, v in self._REQUIRED if msg.find(c, v) is None]
            if msg.command_code == CMD_SESSION_TERMINATION and msg.find(AVP_TERMINATION_CAUSE) is None:
                missing.append((AVP_TERMINATION_CAUSE, 0))
            if missing:
                code, vendor = missing[0]
                raise _Reject(d.DIAMETER_MISSING_AVP, d.Avp(code, bytes(4), vendor), f"missing {missing}")
            if msg.u32_of(d.AVP_AUTH_APPLICATION_ID) != RX_APPLICATION_ID:
                raise _Reject(d.DIAMETER_INVALID_AVP_VALUE, msg.find(d.AVP_AUTH_APPLICATION_ID))
            sid = rec.session_id
            with self._lock:
                known = sid in self._sessions
            if msg.command_code == CMD_SESSION_TERMINATION:
                if not known:
                    raise _Reject(DIAMETER_UNKNOWN_SESSION_ID, why=f"STR for unknown session {sid}")
                code = d.DIAMETER_SUCCESS
                with self._lock:
                    self._sessions.pop(sid, None)
            else:
                request_type = RX_REQUEST_INITIAL if rec.rx_request_type is None else rec.rx_request_type
                if request_type == RX_REQUEST_UPDATE and not known:
                    raise _Reject(DIAMETER_UNKNOWN_SESSION_ID, why=f"AAR update for unknown session {sid}")
                code = self.aar_policy(rec)
                if code == d.DIAMETER_SUCCESS:
                    with self._lock:
                        self._sessions[sid] = conn
        except _Reject as rej:
            log.info("Rx PCRF double: %s -> %s (%s)", rec.command, rej.code, rej)
            code, failed = rej.code, rej.failed

        ans = srv.session_answer(msg)
        ans.add(d.Avp.u32(d.AVP_AUTH_APPLICATION_ID, RX_APPLICATION_ID), *self.local.origin_avps())
        ans.add(srv.result_avp(code, code in RX_EXPERIMENTAL_RESULT_CODES))
        if failed is not None:
            ans.add(d.Avp.grouped(d.AVP_FAILED_AVP, [failed]))
        log.info("Rx PCRF double: %s %s -> %s", rec.command, rec.session_id, code)
        self._add_record(replace(rec, result_code=code, answer=ans))
        return ans
