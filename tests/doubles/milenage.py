"""MILENAGE (3GPP TS 35.206) and the IMS AKA helpers an HSS test double needs.

Functions f1, f1*, f2, f3, f4, f5, f5* follow TS 35.206 clause 4.1 with the default
constants r1..r5 = 64, 0, 32, 64, 96 and c1..c5 = 0, 1, 2, 4, 8 (in the last byte).
TS 35.208 test set 1 is the reference check (tests/unit/test_cx_double.py).

Keys are 16 raw bytes. SIPp takes K and OP as 16-character strings *used as bytes*
(see shared FACTS), so a test subscriber with K ``"0123456789abcdef"`` is given as
``b"0123456789abcdef"``; ``key_bytes`` also accepts a 32-digit hex string. Nothing
else is guessed: a 16-character ``str`` is refused, so raw and hex cannot be mixed up.

What Kamailio's ims_auth does with an AKA vector (read in ims_auth authorize.c,
new_auth_vector/authenticate, Kamailio 5.6/6.0):
- SIP-Authenticate (AVP 609) is taken as *binary* RAND(16)||AUTN(16) and base64-encoded
  into the ``nonce`` of WWW-Authenticate (RFC 3310 nonce = base64(RAND||AUTN)).
- SIP-Authorization (AVP 610) is taken as *binary* XRES and used directly as the digest
  password in HA1 = MD5(username:realm:XRES) (RFC 3310 AKAv1-MD5).
- Confidentiality-Key / Integrity-Key (625/626) are binary CK/IK (16 bytes each).
- For re-synchronisation ims_auth sends in the MAR's SIP-Auth-Data-Item a binary
  SIP-Authorization = RAND(16)||AUTS(14) (base64-decoded from the nonce and auts).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SQN_MODULUS = 1 << 48

_R = (64, 0, 32, 64, 96)  # r1..r5 in bits (all multiples of 8)
_C = tuple(bytes(15) + bytes([v]) for v in (0, 1, 2, 4, 8))  # c1..c5


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _rot(x: bytes, bits: int) -> bytes:
    """Cyclic rotation of a 128-bit value towards the most significant bit."""
    n = (bits // 8) % 16
    return x[n:] + x[:n]


def _aes(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def key_bytes(value: bytes | bytearray | str, name: str = "key", size: int = 16) -> bytes:
    """Normalise K / OP / OPc: raw bytes of ``size`` or a hex string of 2*``size`` digits."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != size:
            raise ValueError(f"{name} must be {size} raw bytes, got {len(value)}")
        return bytes(value)
    if isinstance(value, str):
        if len(value) == 2 * size:
            try:
                return bytes.fromhex(value)
            except ValueError:
                pass
        raise ValueError(
            f"{name} as str must be {2 * size} hex digits; pass raw bytes "
            f"(e.g. {name}=b'...' or '...'.encode()) for SIPp-style printable keys"
        )
    raise TypeError(f"{name} must be bytes or a hex string, not {type(value).__name__}")


def amf_bytes(value: bytes | bytearray | str | int) -> bytes:
    """AMF: 2 raw bytes, 4 hex digits, or an int 0..0xffff."""
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFF:
            raise ValueError("AMF int out of range")
        return value.to_bytes(2, "big")
    return key_bytes(value, "AMF", 2)


def sqn_int(value: int | bytes | bytearray | str) -> int:
    """SQN: an int below 2**48, 6 raw bytes, or 12 hex digits."""
    if isinstance(value, int):
        if not 0 <= value < SQN_MODULUS:
            raise ValueError("SQN must be in 0 .. 2**48-1")
        return value
    return int.from_bytes(key_bytes(value, "SQN", 6), "big")


def opc_from_op(k: bytes, op: bytes) -> bytes:
    """OPc = E_K(OP) xor OP (TS 35.206 clause 4.1)."""
    return _xor(_aes(k, op), op)


class Milenage:
    """The MILENAGE kernel for one subscriber key (K, OPc)."""

    def __init__(self, k: bytes | str, *, op: bytes | str | None = None, opc: bytes | str | None = None):
        self.k = key_bytes(k, "K")
        if (op is None) == (opc is None):
            raise ValueError("give exactly one of op / opc")
        self.opc = key_bytes(opc, "OPc") if opc is not None else opc_from_op(self.k, key_bytes(op, "OP"))

    def _temp(self, rand: bytes) -> bytes:
        return _aes(self.k, _xor(key_bytes(rand, "RAND"), self.opc))

    def _out1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        in1 = sqn + amf + sqn + amf
        x = _xor(_xor(self._temp(rand), _rot(_xor(in1, self.opc), _R[0])), _C[0])
        return _xor(_aes(self.k, x), self.opc)

    def _out(self, rand: bytes, i: int) -> bytes:
        """OUT2..OUT5 (i = 2..5)."""
        x = _xor(_rot(_xor(self._temp(rand), self.opc), _R[i - 1]), _C[i - 1])
        return _xor(_aes(self.k, x), self.opc)

    def f1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-A (8 bytes)."""
        return self._out1(rand, sqn, amf)[:8]

    def f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-S (8 bytes), used in re-synchronisation (AUTS)."""
        return self._out1(rand, sqn, amf)[8:]

    def f2345(self, rand: bytes) -> tuple[bytes, bytes, bytes, bytes]:
        """(RES 8 bytes, CK 16, IK 16, AK 6)."""
        out2 = self._out(rand, 2)
        return out2[8:], self._out(rand, 3), self._out(rand, 4), out2[:6]

    def f5star(self, rand: bytes) -> bytes:
        """AK for re-synchronisation (6 bytes)."""
        return self._out(rand, 5)[:6]


@dataclass(frozen=True)
class AkaVector:
    """One authentication vector (TS 33.102 clause 6.3.2)."""

    rand: bytes
    xres: bytes
    ck: bytes
    ik: bytes
    autn: bytes
    sqn: int

    @property
    def sip_authenticate(self) -> bytes:
        """SIP-Authenticate AVP value for Digest-AKAv1-MD5: binary RAND || AUTN (32 bytes)."""
        return self.rand + self.autn

    @property
    def sip_authorization(self) -> bytes:
        """SIP-Authorization AVP value for Digest-AKAv1-MD5: binary XRES."""
        return self.xres

    @property
    def nonce(self) -> str:
        """The WWW-Authenticate nonce ims_auth builds from SIP-Authenticate."""
        return aka_nonce(self.sip_authenticate)


def generate_vector(m: Milenage, sqn: int, amf: bytes, rand: bytes | None = None) -> AkaVector:
    """AUTN = (SQN xor AK) || AMF || MAC-A; XRES = f2; CK = f3; IK = f4."""
    rand = os.urandom(16) if rand is None else key_bytes(rand, "RAND")
    amf = amf_bytes(amf)
    sqn_b = sqn_int(sqn).to_bytes(6, "big")
    mac_a = m.f1(rand, sqn_b, amf)
    xres, ck, ik, ak = m.f2345(rand)
    autn = _xor(sqn_b, ak) + amf + mac_a
    return AkaVector(rand=rand, xres=xres, ck=ck, ik=ik, autn=autn, sqn=sqn)


def aka_nonce(sip_authenticate: bytes) -> str:
    """base64(RAND || AUTN), as Kamailio ims_auth puts it in the challenge nonce."""
    return base64.b64encode(sip_authenticate).decode("ascii")


# --- the UE side, for tests that play the terminal -------------------------------------


class AutnError(ValueError):
    """AUTN failed the UE-side MAC-A check."""


def ue_authenticate(m: Milenage, rand: bytes, autn: bytes) -> tuple[bytes, int]:
    """What a USIM does with (RAND, AUTN): check MAC-A, return (RES, SQN)."""
    res, _ck, _ik, ak = m.f2345(rand)
    sqn_b = _xor(autn[:6], ak)
    amf = autn[6:8]
    if m.f1(rand, sqn_b, amf) != autn[8:16]:
        raise AutnError("MAC-A mismatch")
    return res, int.from_bytes(sqn_b, "big")


def make_auts(m: Milenage, rand: bytes, sqn_ms: int) -> bytes:
    """AUTS = (SQN_MS xor AK*) || MAC-S, MAC-S = f1*(SQN_MS, RAND, AMF=0000) (TS 33.102 6.3.3)."""
    sqn_b = sqn_int(sqn_ms).to_bytes(6, "big")
    return _xor(sqn_b, m.f5star(rand)) + m.f1star(rand, sqn_b, b"\x00\x00")


def verify_auts(m: Milenage, rand: bytes, auts: bytes) -> int | None:
    """HSS side of re-synchronisation: SQN_MS if MAC-S verifies, else None."""
    if len(auts) != 14:
        return None
    sqn_b = _xor(auts[:6], m.f5star(rand))
    if m.f1star(rand, sqn_b, b"\x00\x00") != auts[6:]:
        return None
    return int.from_bytes(sqn_b, "big")


def akav1_md5_response(
    *,
    username: str,
    realm: str,
    res: bytes,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str = "00000001",
    cnonce: str = "",
) -> str:
    """RFC 3310/2617 digest response with RES as the (binary) password."""

    def md5(data: bytes) -> str:
        return hashlib.md5(data).hexdigest()  # noqa: S324 - RFC 2617 mandates MD5

    ha1 = md5(f"{username}:{realm}:".encode() + res)
    ha2 = md5(f"{method}:{uri}".encode())
    if qop:
        return md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
    return md5(f"{ha1}:{nonce}:{ha2}".encode())
