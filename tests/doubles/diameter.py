"""A minimal Diameter codec (RFC 6733) and base-protocol handling for test doubles.

Wire format (RFC 6733 clause 3 and 4):
- header, 20 bytes: Version(1)=1 | Message Length(3) | Flags(1) R P E T | Command Code(3)
  | Application-ID(4) | Hop-by-Hop(4) | End-to-End(4);
- AVP: Code(4) | Flags(1) V M P | Length(3) | [Vendor-ID(4) if V] | Data, padded to a
  multiple of 4 bytes; Length excludes the padding. Grouped AVPs hold AVPs as data.

Also here: CER/CEA, DWR/DWA, DPR/DPA answers (``BaseProtocol``) and a blocking
``DiameterConnection`` for test clients.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# --- header flags -------------------------------------------------------------------
FLAG_REQUEST = 0x80
FLAG_PROXIABLE = 0x40
FLAG_ERROR = 0x20
FLAG_RETRANSMIT = 0x10

# --- AVP flags ----------------------------------------------------------------------
AVP_FLAG_VENDOR = 0x80
AVP_FLAG_MANDATORY = 0x40
AVP_FLAG_PROTECTED = 0x20

# --- base protocol commands (RFC 6733 clause 3.1) ------------------------------------
CMD_CAPABILITIES_EXCHANGE = 257
CMD_DEVICE_WATCHDOG = 280
CMD_DISCONNECT_PEER = 282

# --- base AVP codes (RFC 6733 clause 4.5) -------------------------------------------
AVP_USER_NAME = 1
AVP_HOST_IP_ADDRESS = 257
AVP_AUTH_APPLICATION_ID = 258
AVP_ACCT_APPLICATION_ID = 259
AVP_VENDOR_SPECIFIC_APPLICATION_ID = 260
AVP_SESSION_ID = 263
AVP_ORIGIN_HOST = 264
AVP_SUPPORTED_VENDOR_ID = 265
AVP_VENDOR_ID = 266
AVP_FIRMWARE_REVISION = 267
AVP_RESULT_CODE = 268
AVP_PRODUCT_NAME = 269
AVP_DISCONNECT_CAUSE = 273
AVP_AUTH_SESSION_STATE = 277
AVP_ORIGIN_STATE_ID = 278
AVP_FAILED_AVP = 279
AVP_ERROR_MESSAGE = 281
AVP_ROUTE_RECORD = 282
AVP_DESTINATION_REALM = 283
AVP_PROXY_INFO = 284
AVP_DESTINATION_HOST = 293
AVP_ORIGIN_REALM = 296
AVP_EXPERIMENTAL_RESULT = 297
AVP_EXPERIMENTAL_RESULT_CODE = 298
AVP_INBAND_SECURITY_ID = 299

BASE_AVP_CODES = frozenset(
    {
        AVP_USER_NAME,
        AVP_HOST_IP_ADDRESS,
        AVP_AUTH_APPLICATION_ID,
        AVP_ACCT_APPLICATION_ID,
        AVP_VENDOR_SPECIFIC_APPLICATION_ID,
        AVP_SESSION_ID,
        AVP_ORIGIN_HOST,
        AVP_SUPPORTED_VENDOR_ID,
        AVP_VENDOR_ID,
        AVP_FIRMWARE_REVISION,
        AVP_RESULT_CODE,
        AVP_PRODUCT_NAME,
        AVP_DISCONNECT_CAUSE,
        AVP_AUTH_SESSION_STATE,
        AVP_ORIGIN_STATE_ID,
        AVP_FAILED_AVP,
        AVP_ERROR_MESSAGE,
        AVP_ROUTE_RECORD,
        AVP_DESTINATION_REALM,
        AVP_PROXY_INFO,
        AVP_DESTINATION_HOST,
        AVP_ORIGIN_REALM,
        AVP_EXPERIMENTAL_RESULT,
        AVP_EXPERIMENTAL_RESULT_CODE,
        AVP_INBAND_SECURITY_ID,
    }
)

# --- Result-Code values (RFC 6733 clause 7.1) ---------------------------------------
DIAMETER_SUCCESS = 2001
DIAMETER_COMMAND_UNSUPPORTED = 3001
DIAMETER_UNABLE_TO_DELIVER = 3002
DIAMETER_APPLICATION_UNSUPPORTED = 3007
DIAMETER_INVALID_HDR_BITS = 3008
DIAMETER_INVALID_AVP_BITS = 3009
DIAMETER_AVP_UNSUPPORTED = 5001
DIAMETER_AUTHORIZATION_REJECTED = 5003
DIAMETER_INVALID_AVP_VALUE = 5004
DIAMETER_MISSING_AVP = 5005
DIAMETER_NO_COMMON_APPLICATION = 5010
DIAMETER_UNABLE_TO_COMPLY = 5012
DIAMETER_INVALID_AVP_LENGTH = 5014

AUTH_SESSION_STATE_NO_STATE_MAINTAINED = 1
RELAY_APPLICATION_ID = 0xFFFFFFFF
DISCONNECT_CAUSE_REBOOTING = 0

HEADER_LEN = 20
MAX_MESSAGE_LEN = 1 << 24


class DiameterDecodeError(ValueError):
    """A message or AVP that cannot be decoded; ``result_code`` says which RFC error."""

    def __init__(self, message: str, result_code: int = DIAMETER_INVALID_AVP_LENGTH):
        super().__init__(message)
        self.result_code = result_code


@dataclass
class Avp:
    code: int
    data: bytes = b""
    vendor_id: int = 0
    mandatory: bool = True
    protected: bool = False

    # --- constructors --------------------------------------------------------------
    @classmethod
    def u32(cls, code: int, value: int, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        return cls(code, struct.pack("!I", value), vendor_id, mandatory)

    @classmethod
    def u64(cls, code: int, value: int, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        return cls(code, struct.pack("!Q", value), vendor_id, mandatory)

    @classmethod
    def utf8(cls, code: int, value: str, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        return cls(code, value.encode("utf-8"), vendor_id, mandatory)

    @classmethod
    def octets(cls, code: int, value: bytes, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        return cls(code, bytes(value), vendor_id, mandatory)

    @classmethod
    def grouped(cls, code: int, avps: Iterable[Avp], vendor_id: int = 0, mandatory: bool = True) -> Avp:
        return cls(code, b"".join(a.encode() for a in avps), vendor_id, mandatory)

    @classmethod
    def address(cls, code: int, ip: str, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        """Address type (RFC 6733 clause 4.3.1): AddressType(2) || address."""
        addr = ipaddress.ip_address(ip)
        family = 1 if addr.version == 4 else 2
        return cls(code, struct.pack("!H", family) + addr.packed, vendor_id, mandatory)

    # --- accessors -----------------------------------------------------------------
    @property
    def flags(self) -> int:
        f = 0
        if self.vendor_id:
            f |= AVP_FLAG_VENDOR
        if self.mandatory:
            f |= AVP_FLAG_MANDATORY
        if self.protected:
            f |= AVP_FLAG_PROTECTED
        return f

    def as_u32(self) -> int:
        if len(self.data) != 4:
            raise DiameterDecodeError(f"AVP {self.code}: Unsigned32 needs 4 bytes", DIAMETER_INVALID_AVP_LENGTH)
        return struct.unpack("!I", self.data)[0]

    def as_u64(self) -> int:
        if len(self.data) != 8:
            raise DiameterDecodeError(f"AVP {self.code}: Unsigned64 needs 8 bytes", DIAMETER_INVALID_AVP_LENGTH)
        return struct.unpack("!Q", self.data)[0]

    def as_str(self) -> str:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DiameterDecodeError(f"AVP {self.code}: invalid UTF-8", DIAMETER_INVALID_AVP_VALUE) from exc

    def as_grouped(self) -> list[Avp]:
        return decode_avps(self.data)

    def as_address(self) -> str:
        if len(self.data) < 2:
            raise DiameterDecodeError(f"AVP {self.code}: Address too short")
        family = struct.unpack("!H", self.data[:2])[0]
        raw = self.data[2:]
        if (family, len(raw)) not in ((1, 4), (2, 16)):
            raise DiameterDecodeError(f"AVP {self.code}: bad Address", DIAMETER_INVALID_AVP_VALUE)
        return str(ipaddress.ip_address(raw))

    def find(self, code: int, vendor_id: int = 0) -> Avp | None:
        """First AVP with ``code``/``vendor_id`` inside this grouped AVP."""
        return next(iter(find_all(self.as_grouped(), code, vendor_id)), None)

    # --- wire ----------------------------------------------------------------------
    def encode(self) -> bytes:
        header_len = 12 if self.vendor_id else 8
        length = header_len + len(self.data)
        if length >= 1 << 24:
            raise ValueError("AVP too long")
        out = struct.pack("!IB", self.code, self.flags) + length.to_bytes(3, "big")
        if self.vendor_id:
            out += struct.pack("!I", self.vendor_id)
        out += self.data
        return out + b"\x00" * (-len(out) % 4)


def decode_avps(buf: bytes) -> list[Avp]:
    """Decode a sequence of AVPs (message body or grouped AVP data)."""
    avps: list[Avp] = []
    pos = 0
    while pos < len(buf):
        if len(buf) - pos < 8:
            raise DiameterDecodeError("truncated AVP header")
        code, flags = struct.unpack_from("!IB", buf, pos)
        length = int.from_bytes(buf[pos + 5 : pos + 8], "big")
        vendor = 0
        header_len = 8
        if flags & AVP_FLAG_VENDOR:
            if len(buf) - pos < 12:
                raise DiameterDecodeError(f"AVP {code}: truncated vendor header")
            vendor = struct.unpack_from("!I", buf, pos + 8)[0]
            header_len = 12
        if length < header_len or pos + length > len(buf):
            raise DiameterDecodeError(f"AVP {code}: bad length {length}")
        data = bytes(buf[pos + header_len : pos + length])
        avps.append(Avp(code, data, vendor, bool(flags & AVP_FLAG_MANDATORY), bool(flags & AVP_FLAG_PROTECTED)))
        pos += length + (-length % 4)
    return avps


def find_all(avps: Iterable[Avp], code: int, vendor_id: int = 0) -> Iterator[Avp]:
    return (a for a in avps if a.code == code and a.vendor_id == vendor_id)


_hop_by_hop = itertools.count(int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF)
_id_lock = threading.Lock()


def next_hop_by_hop() -> int:
    with _id_lock:
        return next(_hop_by_hop) & 0xFFFFFFFF


def new_end_to_end() -> int:
    """High 12 bits from the clock, low 20 random (RFC 6733 clause 3)."""
    return ((int(time.time()) & 0xFFF) << 20) | (int.from_bytes(os.urandom(3), "big") & 0xFFFFF)


_session_counter = itertools.count(1)


def new_session_id(origin_host: str) -> str:
    """<DiameterIdentity>;<high 32 bits>;<low 32 bits> (RFC 6733 clause 8.8)."""
    return f"{origin_host};{int(time.time()) & 0xFFFFFFFF};{next(_session_counter)}"


@dataclass
class Message:
    command_code: int
    application_id: int = 0
    request: bool = True
    proxiable: bool = False
    error: bool = False
    retransmit: bool = False
    hop_by_hop: int = field(default_factory=next_hop_by_hop)
    end_to_end: int = field(default_factory=new_end_to_end)
    avps: list[Avp] = field(default_factory=list)

    @property
    def flags(self) -> int:
        f = 0
        if self.request:
            f |= FLAG_REQUEST
        if self.proxiable:
            f |= FLAG_PROXIABLE
        if self.error:
            f |= FLAG_ERROR
        if self.retransmit:
            f |= FLAG_RETRANSMIT
        return f

    def add(self, *avps: Avp) -> Message:
        self.avps.extend(avps)
        return self

    def find(self, code: int, vendor_id: int = 0) -> Avp | None:
        return next(find_all(self.avps, code, vendor_id), None)

    def find_all(self, code: int, vendor_id: int = 0) -> list[Avp]:
        return list(find_all(self.avps, code, vendor_id))

    def str_of(self, code: int, vendor_id: int = 0) -> str | None:
        avp = self.find(code, vendor_id)
        return avp.as_str() if avp else None

    def u32_of(self, code: int, vendor_id: int = 0) -> int | None:
        avp = self.find(code, vendor_id)
        return avp.as_u32() if avp else None

    @property
    def session_id(self) -> str | None:
        return self.str_of(AVP_SESSION_ID)

    @property
    def result_code(self) -> int | None:
        return self.u32_of(AVP_RESULT_CODE)

    @property
    def experimental_result(self) -> tuple[int, int] | None:
        """(Vendor-Id, Experimental-Result-Code) or None."""
        avp = self.find(AVP_EXPERIMENTAL_RESULT)
        if avp is None:
            return None
        inner = avp.as_grouped()
        vendor = next(find_all(inner, AVP_VENDOR_ID), None)
        code = next(find_all(inner, AVP_EXPERIMENTAL_RESULT_CODE), None)
        return (vendor.as_u32() if vendor else 0, code.as_u32() if code else 0)

    def answer(self) -> Message:
        """An empty answer carrying this request's identifiers and P bit (RFC 6733 6.2)."""
        return Message(
            command_code=self.command_code,
            application_id=self.application_id,
            request=False,
            proxiable=self.proxiable,
            hop_by_hop=self.hop_by_hop,
            end_to_end=self.end_to_end,
        )

    def encode(self) -> bytes:
        body = b"".join(a.encode() for a in self.avps)
        length = HEADER_LEN + len(body)
        header = (
            bytes([1])
            + length.to_bytes(3, "big")
            + bytes([self.flags])
            + self.command_code.to_bytes(3, "big")
            + struct.pack("!III", self.application_id, self.hop_by_hop, self.end_to_end)
        )
        return header + body

    @classmethod
    def decode_header(cls, header: bytes) -> tuple[int, Message]:
        """(message length, message without AVPs) from the 20-byte header."""
        if len(header) != HEADER_LEN:
            raise DiameterDecodeError("short header", DIAMETER_INVALID_HDR_BITS)
        version = header[0]
        length = int.from_bytes(header[1:4], "big")
        if version != 1:
            raise DiameterDecodeError(f"unsupported version {version}", DIAMETER_INVALID_HDR_BITS)
        if length < HEADER_LEN or length % 4:
            raise DiameterDecodeError(f"bad message length {length}", DIAMETER_INVALID_HDR_BITS)
        flags = header[4]
        app, hbh, e2e = struct.unpack("!III", header[8:20])
        msg = cls(
            command_code=int.from_bytes(header[5:8], "big"),
            application_id=app,
            request=bool(flags & FLAG_REQUEST),
            proxiable=bool(flags & FLAG_PROXIABLE),
            error=bool(flags & FLAG_ERROR),
            retransmit=bool(flags & FLAG_RETRANSMIT),
            hop_by_hop=hbh,
            end_to_end=e2e,
        )
        return length, msg

    @classmethod
    def decode(cls, buf: bytes) -> Message:
        length, msg = cls.decode_header(bytes(buf[:HEADER_LEN]))
        if length != len(buf):
            raise DiameterDecodeError(f"length field {length} != {len(buf)} bytes", DIAMETER_INVALID_HDR_BITS)
        msg.avps = decode_avps(bytes(buf[HEADER_LEN:]))
        return msg


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """Read exactly n bytes; None on a clean EOF before the first byte."""
    chunks = []
    got = 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            if got == 0:
                return None
            raise ConnectionError("peer closed the connection mid-message")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_raw_message(sock: socket.socket) -> bytes | None:
    """One whole message off a stream socket (None on EOF)."""
    header = recv_exact(sock, HEADER_LEN)
    if header is None:
        return None
    length, _ = Message.decode_header(header)
    body = recv_exact(sock, length - HEADER_LEN) if length > HEADER_LEN else b""
    if body is None:
        raise ConnectionError("peer closed the connection mid-message")
    return header + body


# --- base protocol ------------------------------------------------------------------


@dataclass
class LocalPeer:
    """What this node says about itself in CEA/DWA/DPA and Origin-* AVPs."""

    origin_host: str
    origin_realm: str
    product_name: str = "ims-core Cx test double"
    vendor_id: int = 0  # RFC 6733 5.3.3: zero in CER/CEA means "ignore"
    firmware_revision: int = 1
    origin_state_id: int = field(default_factory=lambda: int(time.time()) & 0xFFFFFFFF)
    auth_application_ids: tuple[tuple[int, int], ...] = ()  # (vendor, app) pairs
    supported_vendor_ids: tuple[int, ...] = ()

    def origin_avps(self) -> list[Avp]:
        return [Avp.utf8(AVP_ORIGIN_HOST, self.origin_host), Avp.utf8(AVP_ORIGIN_REALM, self.origin_realm)]


def advertised_auth_apps(cer: Message) -> set[tuple[int, int]]:
    """(vendor, application) pairs a CER/CEA advertises; vendor 0 for plain Auth-Application-Id."""
    apps = {(0, a.as_u32()) for a in cer.find_all(AVP_AUTH_APPLICATION_ID)}
    for vsai in cer.find_all(AVP_VENDOR_SPECIFIC_APPLICATION_ID):
        inner = vsai.as_grouped()
        vendors = [v.as_u32() for v in find_all(inner, AVP_VENDOR_ID)] or [0]
        for app in find_all(inner, AVP_AUTH_APPLICATION_ID):
            apps.update((v, app.as_u32()) for v in vendors)
    return apps


class BaseProtocol:
    """Answers the base-protocol requests a test server meets (RFC 6733 clause 5)."""

    def __init__(self, local: LocalPeer):
        self.local = local

    def cea(self, cer: Message, local_ip: str) -> tuple[Message, bool]:
        """(CEA, accepted). Accepted when CER shares an auth application with us or relays."""
        ours = {app for _vendor, app in self.local.auth_application_ids}
        common = any(app == RELAY_APPLICATION_ID or app in ours for _vendor, app in advertised_auth_apps(cer))
        ans = cer.answer()
        ans.add(Avp.u32(AVP_RESULT_CODE, DIAMETER_SUCCESS if common else DIAMETER_NO_COMMON_APPLICATION))
        ans.add(*self.local.origin_avps())
        ans.add(Avp.address(AVP_HOST_IP_ADDRESS, local_ip))
        ans.add(Avp.u32(AVP_VENDOR_ID, self.local.vendor_id))
        ans.add(Avp.utf8(AVP_PRODUCT_NAME, self.local.product_name, mandatory=False))
        ans.add(Avp.u32(AVP_ORIGIN_STATE_ID, self.local.origin_state_id))
        for vendor in self.local.supported_vendor_ids:
            ans.add(Avp.u32(AVP_SUPPORTED_VENDOR_ID, vendor))
        for vendor, app in self.local.auth_application_ids:
            ans.add(
                Avp.grouped(
                    AVP_VENDOR_SPECIFIC_APPLICATION_ID,
                    [Avp.u32(AVP_VENDOR_ID, vendor), Avp.u32(AVP_AUTH_APPLICATION_ID, app)],
                )
            )
        ans.add(Avp.u32(AVP_FIRMWARE_REVISION, self.local.firmware_revision, mandatory=False))
        return ans, common

    def dwa(self, dwr: Message) -> Message:
        ans = dwr.answer()
        ans.add(Avp.u32(AVP_RESULT_CODE, DIAMETER_SUCCESS), *self.local.origin_avps())
        ans.add(Avp.u32(AVP_ORIGIN_STATE_ID, self.local.origin_state_id))
        return ans

    def dpa(self, dpr: Message) -> Message:
        ans = dpr.answer()
        ans.add(Avp.u32(AVP_RESULT_CODE, DIAMETER_SUCCESS), *self.local.origin_avps())
        return ans

    def error_answer(self, request: Message, result_code: int, message: str = "", failed: Avp | None = None) -> Message:
        """RFC 6733 clause 7.2 answer-message; E bit for protocol errors (3xxx)."""
        ans = request.answer()
        ans.error = 3000 <= result_code < 4000
        sid = request.find(AVP_SESSION_ID)
        if sid is not None:
            ans.add(sid)
        ans.add(*self.local.origin_avps(), Avp.u32(AVP_RESULT_CODE, result_code))
        if message:
            ans.add(Avp.utf8(AVP_ERROR_MESSAGE, message, mandatory=False))
        if failed is not None:
            ans.add(Avp.grouped(AVP_FAILED_AVP, [failed]))
        return ans


def build_cer(local: LocalPeer, host_ip: str) -> Message:
    msg = Message(CMD_CAPABILITIES_EXCHANGE, 0, request=True)
    msg.add(*local.origin_avps(), Avp.address(AVP_HOST_IP_ADDRESS, host_ip))
    msg.add(Avp.u32(AVP_VENDOR_ID, local.vendor_id))
    msg.add(Avp.utf8(AVP_PRODUCT_NAME, local.product_name, mandatory=False))
    msg.add(Avp.u32(AVP_ORIGIN_STATE_ID, local.origin_state_id))
    for vendor in local.supported_vendor_ids:
        msg.add(Avp.u32(AVP_SUPPORTED_VENDOR_ID, vendor))
    for vendor, app in local.auth_application_ids:
        msg.add(
            Avp.grouped(
                AVP_VENDOR_SPECIFIC_APPLICATION_ID,
                [Avp.u32(AVP_VENDOR_ID, vendor), Avp.u32(AVP_AUTH_APPLICATION_ID, app)],
            )
        )
    return msg


class DiameterConnection:
    """A blocking client connection for tests: send requests, read answers."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)

    def send(self, msg: Message) -> None:
        self.sock.sendall(msg.encode())

    def recv(self) -> Message | None:
        raw = read_raw_message(self.sock)
        return None if raw is None else Message.decode(raw)

    def request(self, msg: Message) -> Message:
        """Send a request and return the answer with its hop-by-hop id (other messages are skipped)."""
        self.send(msg)
        while True:
            ans = self.recv()
            if ans is None:
                raise ConnectionError("connection closed before the answer")
            if not ans.request and ans.hop_by_hop == msg.hop_by_hop:
                return ans

    @property
    def local_ip(self) -> str:
        return self.sock.getsockname()[0]

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> DiameterConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
