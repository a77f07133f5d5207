"""``CxHssTestDouble``: an HSS stand-in on the Cx interface (TS 29.228 / TS 29.229).

A threaded TCP Diameter server for live tests: Kamailio's I-CSCF (UAR, LIR) and S-CSCF
(MAR, SAR) connect to it as to open5gs' HSS. It implements the HSS side of:

- CER/CEA, DWR/DWA, DPR/DPA (RFC 6733); CEA advertises Vendor-Specific-Application-Id
  {Vendor-Id 10415, Auth-Application-Id 16777216} and Supported-Vendor-Id 10415.
- UAR/UAA (29.228 6.1.1): Experimental-Result DIAMETER_FIRST_REGISTRATION (2001) or
  DIAMETER_SUBSEQUENT_REGISTRATION (2002) with Server-Name when an S-CSCF is assigned or
  stored, else with Server-Capabilities; DE_REGISTRATION answers Result-Code
  DIAMETER_SUCCESS + Server-Name or DIAMETER_ERROR_IDENTITY_NOT_REGISTERED (5003).
- MAR/MAA (29.228 6.3): SIP-Number-Auth-Items and that many SIP-Auth-Data-Item
  {SIP-Item-Number, SIP-Authentication-Scheme "Digest-AKAv1-MD5", SIP-Authenticate
  (RAND||AUTN), SIP-Authorization (XRES), Confidentiality-Key, Integrity-Key}; User-Name
  and Public-Identity echoed (in errors too: Kamailio reads them before the result);
  SQN advances per vector; AUTS re-synchronisation (TS 33.102 6.3.5) is honoured.
- SAR/SAA (29.228 6.1.2): Server-Assignment-Type drives the registration state of the
  implicit registration set (all IMPUs of the IMPI); REGISTRATION & co. return User-Name
  and User-Data, an IMSSubscription XML (29.228 annex E / CxDataType.xsd).
- LIR/LIA (29.228 6.1.4): Server-Name of the serving S-CSCF, DIAMETER_UNREGISTERED_SERVICE
  (2003) + Server-Capabilities for users with unregistered services, else 5003.
- Unknown IMPI/IMPU: DIAMETER_ERROR_USER_UNKNOWN (5001); IMPU of another IMPI:
  DIAMETER_ERROR_IDENTITIES_DONT_MATCH (5002); missing mandatory AVPs: DIAMETER_MISSING_AVP.

Every Cx answer carries Session-Id, Vendor-Specific-Application-Id {10415, 16777216},
Auth-Session-State (NO_STATE_MAINTAINED), Origin-Host and Origin-Realm. 3GPP result
codes go in Experimental-Result {Vendor-Id 10415, Experimental-Result-Code}; base codes
in Result-Code. A failure while answering is logged, kept in ``errors`` and answered with
DIAMETER_UNABLE_TO_COMPLY: no thread dies silently.

Behaviour that the spec leaves to the HSS, as chosen here:
- The IMPUs of one IMPI form one implicit registration set.
- SQN is the next value to use; each vector uses it and then adds ``sqn_step`` (default
  32: SEQ+1 with IND 0 in the TS 33.102 annex C.3.2 SEQ||IND profile, as open5gs does).
- A MAR stores its Server-Name as the assigned S-CSCF (29.228 8.1: a MAR overwrites it);
  any other command naming a different S-CSCF while one is assigned is answered
  DIAMETER_UNABLE_TO_COMPLY without state change (29.228 8.1, "shall not overwrite").
- M-bit AVPs the double does not know are recorded in ``CxRequest.unknown_mandatory``;
  with ``strict_mandatory_avps=True`` top-level ones are rejected with
  DIAMETER_AVP_UNSUPPORTED + Failed-AVP (RFC 6733 4.1).
"""

from __future__ import annotations

import logging
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from xml.sax.saxutils import escape

from . import diameter as d
from . import server as srv
from .milenage import AkaVector, Milenage, amf_bytes, generate_vector, key_bytes, sqn_int, verify_auts
from .server import Connection, DiameterServerDouble, ServedApplication

log = logging.getLogger("ims_core.tests.cx_hss")

VENDOR_3GPP = 10415
CX_APPLICATION_ID = 16777216

# Command codes (TS 29.229 6.1)
CMD_UAR = 300
CMD_SAR = 301
CMD_LIR = 302
CMD_MAR = 303
COMMAND_NAMES = {
    CMD_UAR: "UAR",
    CMD_SAR: "SAR",
    CMD_LIR: "LIR",
    CMD_MAR: "MAR",
    304: "RTR",
    305: "PPR",
    **srv.BASE_COMMAND_NAMES,
}

# 3GPP AVP codes (TS 29.229 6.3, vendor 10415)
AVP_VISITED_NETWORK_IDENTIFIER = 600
AVP_PUBLIC_IDENTITY = 601
AVP_SERVER_NAME = 602
AVP_SERVER_CAPABILITIES = 603
AVP_MANDATORY_CAPABILITY = 604
AVP_OPTIONAL_CAPABILITY = 605
AVP_USER_DATA = 606
AVP_SIP_NUMBER_AUTH_ITEMS = 607
AVP_SIP_AUTHENTICATION_SCHEME = 608
AVP_SIP_AUTHENTICATE = 609
AVP_SIP_AUTHORIZATION = 610
AVP_SIP_AUTHENTICATION_CONTEXT = 611
AVP_SIP_AUTH_DATA_ITEM = 612
AVP_SIP_ITEM_NUMBER = 613
AVP_SERVER_ASSIGNMENT_TYPE = 614
AVP_DEREGISTRATION_REASON = 615
AVP_CHARGING_INFORMATION = 618
AVP_USER_AUTHORIZATION_TYPE = 623
AVP_USER_DATA_ALREADY_AVAILABLE = 624
AVP_CONFIDENTIALITY_KEY = 625
AVP_INTEGRITY_KEY = 626
AVP_SUPPORTED_FEATURES = 628
AVP_ORIGINATING_REQUEST = 633
AVP_WILDCARDED_PUBLIC_IDENTITY = 634
AVP_UAR_FLAGS = 637
AVP_SESSION_PRIORITY = 650
KNOWN_3GPP_AVPS = frozenset(range(600, 660))

# Experimental-Result-Code values (TS 29.229 6.2)
DIAMETER_FIRST_REGISTRATION = 2001
DIAMETER_SUBSEQUENT_REGISTRATION = 2002
DIAMETER_UNREGISTERED_SERVICE = 2003
DIAMETER_SUCCESS_SERVER_NAME_NOT_STORED = 2004
DIAMETER_ERROR_USER_UNKNOWN = 5001
DIAMETER_ERROR_IDENTITIES_DONT_MATCH = 5002
DIAMETER_ERROR_IDENTITY_NOT_REGISTERED = 5003
DIAMETER_ERROR_ROAMING_NOT_ALLOWED = 5004
DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED = 5006
DIAMETER_ERROR_IN_ASSIGNMENT_TYPE = 5007

# User-Authorization-Type (29.229 6.3.24)
UAT_REGISTRATION = 0
UAT_DE_REGISTRATION = 1
UAT_REGISTRATION_AND_CAPABILITIES = 2

# Server-Assignment-Type (29.229 6.3.15)
SAT_NO_ASSIGNMENT = 0
SAT_REGISTRATION = 1
SAT_RE_REGISTRATION = 2
SAT_UNREGISTERED_USER = 3
SAT_TIMEOUT_DEREGISTRATION = 4
SAT_USER_DEREGISTRATION = 5
SAT_TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME = 6
SAT_USER_DEREGISTRATION_STORE_SERVER_NAME = 7
SAT_ADMINISTRATIVE_DEREGISTRATION = 8
SAT_AUTHENTICATION_FAILURE = 9
SAT_AUTHENTICATION_TIMEOUT = 10
SAT_DEREGISTRATION_TOO_MUCH_DATA = 11
_SAT_DEREG_CLEAR = {
    SAT_TIMEOUT_DEREGISTRATION,
    SAT_USER_DEREGISTRATION,
    SAT_ADMINISTRATIVE_DEREGISTRATION,
    SAT_DEREGISTRATION_TOO_MUCH_DATA,
}
_SAT_DEREG_KEEP = {SAT_TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME, SAT_USER_DEREGISTRATION_STORE_SERVER_NAME}
USER_DATA_ALREADY_AVAILABLE = 1

SCHEME_AKAV1 = "Digest-AKAv1-MD5"
SCHEME_AKAV2 = "Digest-AKAv2-MD5"
SCHEME_UNKNOWN = "unknown"  # ims_auth's "HSS-selected" scheme name

DEFAULT_ORIGIN_HOST = "hss.epc.mnc001.mcc001.3gppnetwork.org"
DEFAULT_ORIGIN_REALM = "epc.mnc001.mcc001.3gppnetwork.org"


class RegState(StrEnum):
    """IMS registration state of a Public User Identity (29.228 6.1.2)."""

    NOT_REGISTERED = "NOT_REGISTERED"
    REGISTERED = "REGISTERED"
    UNREGISTERED = "UNREGISTERED"


def _avp3(code: int, value: str | bytes | int, mandatory: bool = True) -> d.Avp:
    if isinstance(value, int):
        return d.Avp.u32(code, value, VENDOR_3GPP, mandatory)
    if isinstance(value, str):
        return d.Avp.utf8(code, value, VENDOR_3GPP, mandatory)
    return d.Avp.octets(code, value, VENDOR_3GPP, mandatory)


@dataclass
class Subscriber:
    """One IMS subscription: an IMPI, its AKA credentials and its IMPUs.

    ``k``/``op``/``opc`` take raw 16 bytes (SIPp style, e.g. ``b"0123456789abcdef"``)
    or 32 hex digits. ``ifc_xml`` is zero or more ``<InitialFilterCriteria>`` elements
    placed in the ServiceProfile. ``unregistered_services`` says whether the user has
    services in the unregistered state (LIR then answers 2003 instead of 5003).
    ``server_name`` pre-stores an S-CSCF name, as an earlier deregistration with
    STORE_SERVER_NAME would.
    """

    impi: str
    k: bytes | str
    impus: list[str]
    op: bytes | str | None = None
    opc: bytes | str | None = None
    amf: bytes | str | int = b"\x80\x00"
    sqn: int | bytes | str = 0
    ifc_xml: str = ""
    unregistered_services: bool = False
    server_name: str | None = None
    # runtime state (owned by the double, guarded by its lock)
    impu_state: dict[str, RegState] = field(default_factory=dict)
    vectors: list[AkaVector] = field(default_factory=list)
    milenage: Milenage = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.impus:
            raise ValueError(f"{self.impi}: at least one IMPU is needed")
        self.k = key_bytes(self.k, "K")
        self.milenage = Milenage(self.k, op=self.op, opc=self.opc)
        self.op = key_bytes(self.op, "OP") if self.op is not None else None
        self.opc = self.milenage.opc
        self.amf = amf_bytes(self.amf)
        self.sqn = sqn_int(self.sqn)
        self.impus = list(self.impus)
        for impu in self.impus:
            self.impu_state.setdefault(impu, RegState.NOT_REGISTERED)
        if self.ifc_xml.strip():
            root = ET.fromstring(f"<ServiceProfile>{self.ifc_xml}</ServiceProfile>")
            bad = [child.tag for child in root if child.tag != "InitialFilterCriteria"]
            if bad:
                raise ValueError(f"{self.impi}: ifc_xml may hold only InitialFilterCriteria, got {bad}")

    @property
    def state(self) -> RegState:
        """Registration state of the implicit registration set."""
        states = set(self.impu_state.values())
        for s in (RegState.REGISTERED, RegState.UNREGISTERED):
            if s in states:
                return s
        return RegState.NOT_REGISTERED

    def set_state(self, state: RegState) -> None:
        for impu in self.impus:
            self.impu_state[impu] = state

    def user_data_xml(self) -> str:
        """IMSSubscription per 29.228 annex E (tIMSSubscription / tServiceProfile)."""
        identities = "".join(
            f"<PublicIdentity><Identity>{escape(impu)}</Identity></PublicIdentity>" for impu in self.impus
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<IMSSubscription xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            ' xsi:noNamespaceSchemaLocation="CxDataType.xsd">'
            f"<PrivateID>{escape(self.impi)}</PrivateID>"
            f"<ServiceProfile>{identities}{self.ifc_xml.strip()}</ServiceProfile>"
            "</IMSSubscription>"
        )


@dataclass(frozen=True)
class CxRequest:
    """What the double received and answered, for tests to inspect."""

    command: str
    command_code: int
    time: float
    peer: str | None
    session_id: str | None
    user_name: str | None
    public_identities: tuple[str, ...]
    server_name: str | None
    visited_network: str | None
    authorization_type: int | None
    server_assignment_type: int | None
    user_data_already_available: int | None
    auth_scheme: str | None
    auth_items_requested: int | None
    resync: bool
    result_code: int | None
    experimental_result_code: int | None
    unknown_mandatory: tuple[tuple[int, int], ...]
    request: d.Message = field(repr=False)
    answer: d.Message | None = field(repr=False)


class _Reject(Exception):
    """Abort handling with an answer result: base Result-Code or 3GPP experimental code."""

    def __init__(self, code: int, experimental: bool = True, failed: d.Avp | None = None, why: str = ""):
        super().__init__(why or str(code))
        self.code = code
        self.experimental = experimental
        self.failed = failed


def _normalise(subscribers: Mapping[str, Subscriber | Mapping] | Iterable[Subscriber]) -> dict[str, Subscriber]:
    out: dict[str, Subscriber] = {}
    if isinstance(subscribers, Mapping):
        items = []
        for impi, sub in subscribers.items():
            if isinstance(sub, Subscriber):
                if sub.impi != impi:
                    raise ValueError(f"subscriber key {impi!r} != impi {sub.impi!r}")
                items.append(sub)
            else:
                items.append(Subscriber(impi=impi, **dict(sub)))
    else:
        items = list(subscribers)
    for sub in items:
        if sub.impi in out:
            raise ValueError(f"duplicate IMPI {sub.impi}")
        out[sub.impi] = sub
    return out


class CxHssTestDouble(DiameterServerDouble[CxRequest]):
    """HSS stand-in on Cx; see the module docstring for the behaviour."""

    application = ServedApplication(CX_APPLICATION_ID, "Cx", "HSS", COMMAND_NAMES, log)

    def __init__(
        self,
        subscribers: Mapping[str, Subscriber | Mapping] | Iterable[Subscriber] = (),
        *,
        origin_host: str = DEFAULT_ORIGIN_HOST,
        origin_realm: str = DEFAULT_ORIGIN_REALM,
        bind_address: str = "127.0.0.1",
        port: int = 3868,
        scscf_names: Iterable[str] = (),
        mandatory_capabilities: Iterable[int] = (),
        optional_capabilities: Iterable[int] = (),
        server_name: str | None = None,
        sqn_step: int = 32,
        max_auth_items: int = 8,
        rand_source: Callable[[], bytes] | None = None,
        strict_mandatory_avps: bool = False,
        subscriber_source: Callable[[str], Subscriber | None] | None = None,
    ):
        """``subscriber_source``: looks an IMPI up where open5gs' HSS would (its database, see
        tests/doubles/open5gs_db.py); consulted on every request naming an IMPI, so a
        subscriber added to or removed from it is known or refused from the next request on."""
        self.subscriber_source = subscriber_source
        self._subs = _normalise(subscribers)
        if server_name:
            for sub in self._subs.values():
                sub.server_name = sub.server_name or server_name
        self._impu_owner: dict[str, str] = {}
        for sub in self._subs.values():
            for impu in sub.impus:
                if impu in self._impu_owner:
                    raise ValueError(f"IMPU {impu} belongs to {self._impu_owner[impu]} and {sub.impi}")
                self._impu_owner[impu] = sub.impi
        super().__init__(origin_host=origin_host, origin_realm=origin_realm, bind_address=bind_address, port=port)
        self.scscf_names = tuple(scscf_names)
        self.mandatory_capabilities = tuple(mandatory_capabilities)
        self.optional_capabilities = tuple(optional_capabilities)
        self.sqn_step = sqn_step
        self.max_auth_items = max_auth_items
        self._rand = rand_source or (lambda: os.urandom(16))
        self.strict_mandatory_avps = strict_mandatory_avps
    # --- state ----------------------------------------------------------------------
    def set_rand_source(self, rand_source: Callable[[], bytes] | None) -> Callable[[], bytes]:
        """Where the RANDs of the next vectors come from (None: os.urandom); returns the previous one."""
        previous, self._rand = self._rand, rand_source or (lambda: os.urandom(16))
        return previous

    def subscriber(self, impi: str) -> Subscriber:
        return self._subs[impi]

    def sqn(self, impi: str) -> int:
        """The SQN the next vector for ``impi`` will use."""
        with self._lock:
            return self._subs[impi].sqn

    def issued_vectors(self, impi: str) -> list[AkaVector]:
        with self._lock:
            return list(self._subs[impi].vectors)

    def registration_state(self, impu: str) -> RegState:
        with self._lock:
            return self._subs[self._impu_owner[impu]].impu_state[impu]

    def assigned_server_name(self, identity: str) -> str | None:
        """Stored S-CSCF name for an IMPI or IMPU."""
        with self._lock:
            impi = identity if identity in self._subs else self._impu_owner[identity]
            return self._subs[impi].server_name

    # --- Cx requests (DiameterServerDouble hook) ------------------------------------
    def _application_request(self, conn: Connection, msg: d.Message) -> d.Message:
        handler = {CMD_UAR: self._uar, CMD_SAR: self._sar, CMD_LIR: self._lir, CMD_MAR: self._mar}.get(msg.command_code)
        if handler is None:
            return self.base.error_answer(msg, d.DIAMETER_COMMAND_UNSUPPORTED)
        return self._cx(conn, msg, handler)

    # --- Cx framework --------------------------------------------------------------
    _COMMON_REQUIRED = srv.required_avps((d.AVP_VENDOR_SPECIFIC_APPLICATION_ID, 0), (d.AVP_AUTH_SESSION_STATE, 0))
    _REQUIRED = {
        CMD_UAR: (
            (d.AVP_USER_NAME, 0),
            (AVP_PUBLIC_IDENTITY, VENDOR_3GPP),
            (AVP_VISITED_NETWORK_IDENTIFIER, VENDOR_3GPP),
        ),
        CMD_SAR: (
            (AVP_SERVER_NAME, VENDOR_3GPP),
            (AVP_SERVER_ASSIGNMENT_TYPE, VENDOR_3GPP),
            (AVP_USER_DATA_ALREADY_AVAILABLE, VENDOR_3GPP),
        ),
        CMD_LIR: ((AVP_PUBLIC_IDENTITY, VENDOR_3GPP),),
        CMD_MAR: (
            (d.AVP_USER_NAME, 0),
            (AVP_PUBLIC_IDENTITY, VENDOR_3GPP),
            (AVP_SIP_NUMBER_AUTH_ITEMS, VENDOR_3GPP),
            (AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP),
            (AVP_SERVER_NAME, VENDOR_3GPP),
        ),
    }

    def _cx(
        self, conn: Connection, req: d.Message, handler: Callable[[d.Message], tuple[list[d.Avp], tuple[int, bool]]]
    ) -> d.Message:
        unknown = srv.unknown_mandatory(req.avps, KNOWN_3GPP_AVPS)
        if unknown:
            log.warning("Cx HSS double: unknown M-bit AVPs in %s: %s", COMMAND_NAMES[req.command_code], unknown)
        body: list[d.Avp] = []
        result: tuple[int, bool]
        try:
            missing = [
                (code, vendor)
                for code, vendor in self._COMMON_REQUIRED + self._REQUIRED[req.command_code]
                if req.find(code, vendor) is None
            ]
            if missing:
                code, vendor = missing[0]
                raise _Reject(d.DIAMETER_MISSING_AVP, False, d.Avp(code, bytes(4), vendor), f"missing {missing}")
            if unknown and self.strict_mandatory_avps:
                code, vendor = unknown[0]
                raise _Reject(d.DIAMETER_AVP_UNSUPPORTED, False, req.find(code, vendor))
            with self._lock:
                self._refresh(req.str_of(d.AVP_USER_NAME))
                body, result = handler(req)
        except _Reject as rej:
            log.info("Cx HSS double: %s -> %s (%s)", COMMAND_NAMES[req.command_code], rej.code, rej)
            result = (rej.code, rej.experimental)
            if req.command_code == CMD_MAR:  # ims_auth reads these before the result
                body = [a for a in (req.find(d.AVP_USER_NAME), req.find(AVP_PUBLIC_IDENTITY, VENDOR_3GPP)) if a]
            if rej.failed is not None:
                body.append(d.Avp.grouped(d.AVP_FAILED_AVP, [rej.failed]))
        ans = srv.session_answer(req)
        ans.add(
            d.Avp.grouped(
                d.AVP_VENDOR_SPECIFIC_APPLICATION_ID,
                [d.Avp.u32(d.AVP_VENDOR_ID, VENDOR_3GPP), d.Avp.u32(d.AVP_AUTH_APPLICATION_ID, CX_APPLICATION_ID)],
            )
        )
        ans.add(srv.result_avp(*result))
        ans.add(d.Avp.u32(d.AVP_AUTH_SESSION_STATE, d.AUTH_SESSION_STATE_NO_STATE_MAINTAINED))
        ans.add(*self.local.origin_avps(), *body)
        self._record(conn, req, ans, unknown)
        return ans

    def _record(self, conn: Connection, req: d.Message, ans: d.Message, unknown: tuple) -> None:
        def s3(code: int) -> str | None:
            avp = req.find(code, VENDOR_3GPP)
            return avp.data.decode("utf-8", "replace") if avp else None

        def u3(code: int) -> int | None:
            avp = req.find(code, VENDOR_3GPP)
            return avp.as_u32() if avp and len(avp.data) == 4 else None

        scheme = None
        resync = False
        item = req.find(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP)
        if item is not None:
            inner = item.find(AVP_SIP_AUTHENTICATION_SCHEME, VENDOR_3GPP)
            scheme = inner.as_str() if inner else None
            resync = item.find(AVP_SIP_AUTHORIZATION, VENDOR_3GPP) is not None
        exp = ans.experimental_result
        rec = CxRequest(
            command=COMMAND_NAMES[req.command_code],
            command_code=req.command_code,
            time=time.time(),
            peer=req.str_of(d.AVP_ORIGIN_HOST),
            session_id=req.session_id,
            user_name=req.str_of(d.AVP_USER_NAME),
            public_identities=tuple(a.as_str() for a in req.find_all(AVP_PUBLIC_IDENTITY, VENDOR_3GPP)),
            server_name=s3(AVP_SERVER_NAME),
            visited_network=s3(AVP_VISITED_NETWORK_IDENTIFIER),
            authorization_type=u3(AVP_USER_AUTHORIZATION_TYPE),
            server_assignment_type=u3(AVP_SERVER_ASSIGNMENT_TYPE),
            user_data_already_available=u3(AVP_USER_DATA_ALREADY_AVAILABLE),
            auth_scheme=scheme,
            auth_items_requested=u3(AVP_SIP_NUMBER_AUTH_ITEMS),
            resync=resync,
            result_code=ans.result_code,
            experimental_result_code=exp[1] if exp else None,
            unknown_mandatory=unknown,
            request=req,
            answer=ans,
        )
        self._add_record(rec)

    # --- lookups -------------------------------------------------------------------
    def _refresh(self, impi: str | None) -> None:
        """Follow ``subscriber_source`` for ``impi``: learn it, or forget it once it is gone.
        A known subscriber keeps its state (SQN, registration) while the source still has it."""
        if self.subscriber_source is None or not impi:
            return
        found = self.subscriber_source(impi)
        current = self._subs.get(impi)
        if found is None and current is not None:
            del self._subs[impi]
            for impu in current.impus:
                self._impu_owner.pop(impu, None)
        elif found is not None and current is None:
            taken = [impu for impu in found.impus if impu in self._impu_owner]
            if taken:
                raise ValueError(f"IMPUs {taken} of {impi} belong to other subscribers")
            self._subs[impi] = found
            for impu in found.impus:
                self._impu_owner[impu] = impi

    def _by_impu(self, impu: str, impi: str | None) -> Subscriber:
        owner = self._impu_owner.get(impu)
        if owner is None or (impi is not None and impi not in self._subs):
            raise _Reject(DIAMETER_ERROR_USER_UNKNOWN, why=f"unknown identity {impi or ''} / {impu}")
        if impi is not None and owner != impi:
            raise _Reject(DIAMETER_ERROR_IDENTITIES_DONT_MATCH, why=f"{impu} belongs to {owner}, not {impi}")
        return self._subs[owner]

    def _capabilities(self) -> d.Avp:
        inner = [_avp3(AVP_MANDATORY_CAPABILITY, c) for c in self.mandatory_capabilities]
        inner += [_avp3(AVP_OPTIONAL_CAPABILITY, c) for c in self.optional_capabilities]
        inner += [_avp3(AVP_SERVER_NAME, n) for n in self.scscf_names]
        return d.Avp.grouped(AVP_SERVER_CAPABILITIES, inner, VENDOR_3GPP)

    def _check_server(self, sub: Subscriber, requested: str) -> None:
        if sub.server_name and sub.server_name != requested and sub.state != RegState.NOT_REGISTERED:
            raise _Reject(
                d.DIAMETER_UNABLE_TO_COMPLY, False, why=f"{requested} is not the assigned S-CSCF {sub.server_name}"
            )

    # --- UAR (29.228 6.1.1) --------------------------------------------------------
    def _uar(self, req: d.Message) -> tuple[list[d.Avp], tuple[int, bool]]:
        impi = req.str_of(d.AVP_USER_NAME)
        impu = req.find(AVP_PUBLIC_IDENTITY, VENDOR_3GPP).as_str()
        uat = req.u32_of(AVP_USER_AUTHORIZATION_TYPE, VENDOR_3GPP)
        uat = UAT_REGISTRATION if uat is None else uat
        sub = self._by_impu(impu, impi)
        state = sub.impu_state[impu]
        if uat == UAT_DE_REGISTRATION:
            if state != RegState.NOT_REGISTERED and sub.server_name:
                return [_avp3(AVP_SERVER_NAME, sub.server_name)], (d.DIAMETER_SUCCESS, False)
            raise _Reject(DIAMETER_ERROR_IDENTITY_NOT_REGISTERED, why=f"{impu} not registered")
        if uat == UAT_REGISTRATION_AND_CAPABILITIES:
            return [self._capabilities()], (DIAMETER_FIRST_REGISTRATION, True)
        if uat != UAT_REGISTRATION:
            raise _Reject(d.DIAMETER_INVALID_AVP_VALUE, False, req.find(AVP_USER_AUTHORIZATION_TYPE, VENDOR_3GPP))
        if state != RegState.NOT_REGISTERED and sub.server_name:
            return [_avp3(AVP_SERVER_NAME, sub.server_name)], (DIAMETER_SUBSEQUENT_REGISTRATION, True)
        if sub.server_name:
            return [_avp3(AVP_SERVER_NAME, sub.server_name)], (DIAMETER_FIRST_REGISTRATION, True)
        return [self._capabilities()], (DIAMETER_FIRST_REGISTRATION, True)

    # --- MAR (29.228 6.3) ----------------------------------------------------------
    def _mar(self, req: d.Message) -> tuple[list[d.Avp], tuple[int, bool]]:
        impi = req.str_of(d.AVP_USER_NAME)
        impu_avp = req.find(AVP_PUBLIC_IDENTITY, VENDOR_3GPP)
        sub = self._by_impu(impu_avp.as_str(), impi)
        item = req.find(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP)
        scheme_avp = item.find(AVP_SIP_AUTHENTICATION_SCHEME, VENDOR_3GPP)
        scheme = scheme_avp.as_str() if scheme_avp else SCHEME_UNKNOWN
        if scheme.lower() == SCHEME_UNKNOWN:
            scheme = SCHEME_AKAV1
        if scheme not in (SCHEME_AKAV1, SCHEME_AKAV2):
            raise _Reject(DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED, why=f"scheme {scheme}")
        authz = item.find(AVP_SIP_AUTHORIZATION, VENDOR_3GPP)
        if authz is not None:  # re-synchronisation: RAND(16) || AUTS(14)
            sqn_ms = verify_auts(sub.milenage, authz.data[:16], authz.data[16:]) if len(authz.data) == 30 else None
            if sqn_ms is None:
                raise _Reject(d.DIAMETER_UNABLE_TO_COMPLY, False, why="AUTS does not verify (MAC-S)")
            sub.sqn = (sqn_ms + self.sqn_step) % (1 << 48)
            log.info("Cx HSS double: %s re-synchronised, SQN_MS=%#x", impi, sqn_ms)
        else:
            sub.server_name = req.find(AVP_SERVER_NAME, VENDOR_3GPP).as_str()
        wanted = req.u32_of(AVP_SIP_NUMBER_AUTH_ITEMS, VENDOR_3GPP) or 1
        count = max(1, min(wanted, self.max_auth_items))
        items = []
        for number in range(1, count + 1):
            vec = generate_vector(sub.milenage, sub.sqn, sub.amf, self._rand())
            sub.vectors.append(vec)
            sub.sqn = (sub.sqn + self.sqn_step) % (1 << 48)
            items.append(
                d.Avp.grouped(
                    AVP_SIP_AUTH_DATA_ITEM,
                    [
                        _avp3(AVP_SIP_ITEM_NUMBER, number),
                        _avp3(AVP_SIP_AUTHENTICATION_SCHEME, scheme),
                        _avp3(AVP_SIP_AUTHENTICATE, vec.sip_authenticate),
                        _avp3(AVP_SIP_AUTHORIZATION, vec.sip_authorization),
                        _avp3(AVP_CONFIDENTIALITY_KEY, vec.ck),
                        _avp3(AVP_INTEGRITY_KEY, vec.ik),
                    ],
                    VENDOR_3GPP,
                )
            )
        body = [d.Avp.utf8(d.AVP_USER_NAME, sub.impi), impu_avp, _avp3(AVP_SIP_NUMBER_AUTH_ITEMS, count), *items]
        return body, (d.DIAMETER_SUCCESS, False)

    # --- SAR (29.228 6.1.2) --------------------------------------------------------
    def _sar(self, req: d.Message) -> tuple[list[d.Avp], tuple[int, bool]]:
        impi = req.str_of(d.AVP_USER_NAME)
        impus = [a.as_str() for a in req.find_all(AVP_PUBLIC_IDENTITY, VENDOR_3GPP)]
        sat = req.u32_of(AVP_SERVER_ASSIGNMENT_TYPE, VENDOR_3GPP)
        server = req.find(AVP_SERVER_NAME, VENDOR_3GPP).as_str()
        if impus:
            sub = self._by_impu(impus[0], impi)
            for other in impus[1:]:
                self._by_impu(other, sub.impi)
        elif impi is not None:
            if impi not in self._subs:
                raise _Reject(DIAMETER_ERROR_USER_UNKNOWN, why=f"unknown IMPI {impi}")
            sub = self._subs[impi]
        else:
            raise _Reject(d.DIAMETER_MISSING_AVP, False, d.Avp(AVP_PUBLIC_IDENTITY, b"", VENDOR_3GPP))
        data_available = req.u32_of(AVP_USER_DATA_ALREADY_AVAILABLE, VENDOR_3GPP)
        profile = [d.Avp.utf8(d.AVP_USER_NAME, sub.impi), _avp3(AVP_USER_DATA, sub.user_data_xml().encode())]
        ok = (d.DIAMETER_SUCCESS, False)

        if sat == SAT_NO_ASSIGNMENT:
            if sub.server_name != server:
                raise _Reject(d.DIAMETER_UNABLE_TO_COMPLY, False, why=f"{server} is not assigned")
            return profile, ok
        if sat in (SAT_REGISTRATION, SAT_RE_REGISTRATION):
            self._check_server(sub, server)
            sub.server_name = server
            sub.set_state(RegState.REGISTERED)
            if sat == SAT_RE_REGISTRATION and data_available == USER_DATA_ALREADY_AVAILABLE:
                return profile[:1], ok
            return profile, ok
        if sat == SAT_UNREGISTERED_USER:
            self._check_server(sub, server)
            sub.server_name = server
            if sub.state == RegState.NOT_REGISTERED:
                sub.set_state(RegState.UNREGISTERED)
            return profile, ok
        if sat in _SAT_DEREG_CLEAR or sat in _SAT_DEREG_KEEP:
            self._check_server(sub, server)
            sub.set_state(RegState.NOT_REGISTERED)
            if sat in _SAT_DEREG_CLEAR:
                sub.server_name = None
            return profile[:1], ok
        if sat in (SAT_AUTHENTICATION_FAILURE, SAT_AUTHENTICATION_TIMEOUT):
            self._check_server(sub, server)
            if sub.state == RegState.NOT_REGISTERED:
                sub.server_name = None  # drop the name the MAR stored
            return profile[:1], ok
        raise _Reject(DIAMETER_ERROR_IN_ASSIGNMENT_TYPE, why=f"Server-Assignment-Type {sat} not supported")

    # --- LIR (29.228 6.1.4) --------------------------------------------------------
    def _lir(self, req: d.Message) -> tuple[list[d.Avp], tuple[int, bool]]:
        impu = req.find(AVP_PUBLIC_IDENTITY, VENDOR_3GPP).as_str()
        sub = self._by_impu(impu, None)
        state = sub.impu_state[impu]
        if state != RegState.NOT_REGISTERED and sub.server_name:
            return [_avp3(AVP_SERVER_NAME, sub.server_name)], (d.DIAMETER_SUCCESS, False)
        if sub.unregistered_services:
            if sub.server_name:  # an S-CSCF keeps the profile (e.g. dereg with STORE_SERVER_NAME)
                return [_avp3(AVP_SERVER_NAME, sub.server_name)], (d.DIAMETER_SUCCESS, False)
            return [self._capabilities()], (DIAMETER_UNREGISTERED_SERVICE, True)
        raise _Reject(DIAMETER_ERROR_IDENTITY_NOT_REGISTERED, why=f"{impu} not registered")
