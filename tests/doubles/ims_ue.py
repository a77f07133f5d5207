"""``ImsUeTestDouble``: a UE on Gm that does IMS AKA and sec-agree with IPsec (TS 33.203).

For the vm tier (it needs a kernel with ESP). What it does, by the specs:

- Registration (TS 24.229 5.1.1.2, TS 33.203 7.1/7.2, RFC 3329): the first REGISTER goes
  unprotected from the UE's port 5060 with ``Security-Client: ipsec-3gpp`` naming its own
  SPIs (spi-c, spi-s) and protected ports (port-c, port-s), ``Require``/``Proxy-Require:
  sec-agree`` and an empty ``Authorization``. The 401 must carry ``Security-Server`` (the
  P-CSCF's SPIs, ports and the chosen algorithms) and the nonce base64(RAND||AUTN) (RFC 3310),
  and must not carry CK or IK.
- Keys (TS 33.102 6.3, TS 35.206 Milenage): the UE checks AUTN's MAC-A (a network that does
  not know K is refused) and derives RES, CK and IK. TS 33.203 annex I: HMAC-SHA-1-96 keys are
  IK followed by 32 zero bits, AES-CBC keys are CK.
- The UE installs its own four transport-mode ESP SAs and the policies that require them
  (``ip xfrm`` in its network namespace): port_uc -> port_ps and port_us -> port_pc outbound,
  port_pc -> port_us and port_ps -> port_uc inbound.
- The second REGISTER goes from port_uc to the P-CSCF's port_ps with ``Security-Verify`` (the
  Security-Server copied) and the AKAv1-MD5 digest computed with RES as the password; Via and
  Contact name port_us, where requests and UDP responses from the P-CSCF arrive.
- Calls: INVITE/ACK/BYE over the same protected ports; as callee it answers INVITE with 180
  and 200 (SDP) and BYE with 200, from port_us.

Errors (a missing header, a bad MAC, an unexpected status) raise ``UeError``: the test fails.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field

from .milenage import Milenage

SIP_PORT = 5060


class UeError(AssertionError):
    pass


@dataclass
class SipMessage:
    first_line: str
    headers: list[tuple[str, str]]
    body: str
    source: tuple[str, int]
    local_port: int

    @classmethod
    def parse(cls, data: bytes, source: tuple[str, int], local_port: int) -> SipMessage:
        text = data.decode("utf-8", errors="replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return cls(lines[0], headers, body, source, local_port)

    @property
    def status(self) -> int | None:
        return int(self.first_line.split()[1]) if self.first_line.startswith("SIP/2.0") else None

    @property
    def method(self) -> str | None:
        return None if self.first_line.startswith("SIP/2.0") else self.first_line.split()[0]

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        found = self.all(name)
        return found[0] if found else None


def _params(header: str) -> dict[str, str]:
    """`mech;a=1;b=2` -> {"a": "1", "b": "2"} (mechanism under "mech")."""
    parts = [p.strip() for p in header.split(";")]
    out = {"mech": parts[0]}
    for part in parts[1:]:
        key, _, value = part.partition("=")
        out[key.strip().lower()] = value.strip()
    return out


def _auth_params(header: str) -> dict[str, str]:
    return {k.lower(): v for k, v in re.findall(r'(\w+)="?([^",]*)"?', header.partition(" ")[2])}


@dataclass
class SecurityAssociationSet:
    """What sec-agree settled: both sides' SPIs and ports, the algorithms, the keys."""

    spi_uc: int
    spi_us: int
    port_uc: int
    port_us: int
    spi_pc: int = 0
    spi_ps: int = 0
    port_pc: int = 0
    port_ps: int = 0
    alg: str = ""
    ealg: str = ""
    ik: bytes = b""
    ck: bytes = b""


XFRM_AUTH = {"hmac-sha-1-96": "hmac(sha1)", "hmac-md5-96": "hmac(md5)"}
XFRM_ENC = {"aes-cbc": "cbc(aes)", "null": "ecb(cipher_null)"}  # null: integrity only


@dataclass
class ImsUeTestDouble:
    name: str
    impi: str
    impu: str
    k: bytes
    op: bytes
    address: str
    pcscf: str
    domain: str
    netns: str
    offer_ealg: str = "aes-cbc"
    sa: SecurityAssociationSet | None = None
    received: list[SipMessage] = field(default_factory=list)
    _socks: dict[int, socket.socket] = field(default_factory=dict)
    _cseq: int = 0
    challenges: list[SipMessage] = field(default_factory=list)  # 401s to protected REGISTERs
    call_id: str = ""

    # --- sockets in the UE's namespace -------------------------------------------------

    def open(self, enter) -> None:
        """Binds 5060 and two protected ports inside the namespace (`enter`: its context manager)."""
        port_uc, port_us = 31000 + secrets.randbelow(1000) * 2, 0
        port_us = port_uc + 1
        self.sa = SecurityAssociationSet(
            spi_uc=0x1000 + secrets.randbelow(1 << 30),
            spi_us=0x1000 + secrets.randbelow(1 << 30),
            port_uc=port_uc,
            port_us=port_us,
        )
        with enter():
            for port in (SIP_PORT, port_uc, port_us):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((self.address, port))
                self._socks[port] = sock
        self.call_id = f"{secrets.token_hex(8)}@{self.address}"

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()

    def send(self, text: str, from_port: int, to: tuple[str, int]) -> None:
        self._socks[from_port].sendto(text.encode(), to)

    def receive(self, timeout: float = 8.0, *, want=lambda m: True) -> SipMessage:
        """The next message (on any of the UE's ports) that `want` accepts; others are kept."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.received:
                if want(msg):
                    self.received.remove(msg)
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise UeError(f"{self.name}: nothing expected arrived within {timeout}s")
            import select

            ready, _, _ = select.select(list(self._socks.values()), [], [], min(left, 0.2))
            for sock in ready:
                data, source = sock.recvfrom(65535)
                self.received.append(SipMessage.parse(data, source, sock.getsockname()[1]))

    def response_to(self, cseq_method: str, timeout: float = 30.0, final: bool = True) -> SipMessage:
        def want(m: SipMessage) -> bool:
            return (
                m.status is not None and (m.get("CSeq") or "").endswith(cseq_method) and (m.status >= 200 or not final)
            )

        return self.receive(timeout, want=want)

    # --- registration -------------------------------------------------------------------

    def _register(self, via_port: int, extra: list[str], expires: int = 600) -> str:
        self._cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(8)
        # The Contact names the protected server port from the first REGISTER on, as TS 24.229
        # 5.1.1.2 allows: for the P-CSCF the harder case (its route REGISTER_PENDING_CONTACT).
        contact_port = self.sa.port_us
        lines = [
            f"REGISTER sip:{self.domain} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.address}:{via_port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <{self.impu}>;tag={self.name}reg",
            f"To: <{self.impu}>",
            f"Call-ID: reg-{self.call_id}",
            f"CSeq: {self._cseq} REGISTER",
            f"Contact: <sip:{self.name}@{self.address}:{contact_port}>;expires={expires}",
            f"Expires: {expires}",
            "Supported: path, sec-agree",
            "Require: sec-agree",
            "Proxy-Require: sec-agree",
            *extra,
            "Content-Length: 0",
        ]
        return "\r\n".join(lines) + "\r\n\r\n"

    def security_client(self) -> str:
        sa = self.sa
        return (
            f"Security-Client: ipsec-3gpp;prot=esp;mod=trans;spi-c={sa.spi_uc};spi-s={sa.spi_us};"
            f"port-c={sa.port_uc};port-s={sa.port_us};alg=hmac-sha-1-96;ealg={self.offer_ealg}"
        )

    def register_unprotected(self) -> SipMessage:
        """REGISTER 1: unprotected, with Security-Client; returns the 401."""
        auth = (
            f'Authorization: Digest username="{self.impi}", realm="{self.domain}", nonce="", '
            f'uri="sip:{self.domain}", response=""'
        )
        self.send(self._register(SIP_PORT, [self.security_client(), auth]), SIP_PORT, (self.pcscf, SIP_PORT))
        answer = self.response_to("REGISTER")
        if answer.status != 401:
            raise UeError(f"{self.name}: REGISTER 1 answered {answer.first_line}, not 401")
        return answer

    def aka(self, challenge: SipMessage) -> tuple[str, bytes, bytes, bytes]:
        """(nonce, RES, CK, IK) from a 401's nonce, after checking AUTN's MAC-A (TS 33.102 6.3.3)."""
        www = challenge.get("WWW-Authenticate") or ""
        params = _auth_params(www)
        if "ck" in params or "ik" in params:
            raise UeError(f"{self.name}: the 401 leaks CK/IK to the UE: {www}")
        nonce = params.get("nonce")
        if not nonce:
            raise UeError(f"{self.name}: a 401 without a nonce: {www}")
        raw = base64.b64decode(nonce)
        rand, autn = raw[:16], raw[16:32]
        milenage = Milenage(self.k, op=self.op)
        res, ck, ik, ak = milenage.f2345(rand)
        sqn = bytes(a ^ b for a, b in zip(autn[:6], ak, strict=True))
        amf, mac = autn[6:8], autn[8:16]
        if milenage.f1(rand, sqn, amf) != mac:
            raise UeError(f"{self.name}: AUTN's MAC-A is wrong: the network does not know K")
        return nonce, res, ck, ik

    def take_challenge(self, challenge: SipMessage) -> tuple[str, bytes]:
        """Checks the 401 and the network (AUTN), derives RES/CK/IK; returns (nonce, RES)."""
        server = challenge.get("Security-Server")
        if not server:
            raise UeError(f"{self.name}: the 401 has no Security-Server")
        p = _params(server)
        if p["mech"] != "ipsec-3gpp":
            raise UeError(f"{self.name}: Security-Server mechanism {p['mech']}")
        sa = self.sa
        sa.spi_pc, sa.spi_ps = int(p["spi-c"]), int(p["spi-s"])
        sa.port_pc, sa.port_ps = int(p["port-c"]), int(p["port-s"])
        sa.alg, sa.ealg = p["alg"], p.get("ealg", "null")
        self.security_server = server
        nonce, res, ck, ik = self.aka(challenge)
        sa.ck, sa.ik = ck, ik
        return nonce, res

    def xfrm(self, *args: str) -> str:
        out = subprocess.run(["ip", "-n", self.netns, "xfrm", *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise UeError(f"{self.name}: ip xfrm {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def install_sas(self) -> None:
        """The UE's four SAs and the policies that require ESP on the protected ports."""
        sa = self.sa
        auth_key = "0x" + (sa.ik + bytes(4)).hex() if sa.alg == "hmac-sha-1-96" else "0x" + sa.ik.hex()
        enc_key = "0x" + sa.ck.hex() if sa.ealg == "aes-cbc" else ""
        me, pc = self.address, self.pcscf
        flows = [  # (src, dst, sport, dport, spi, dir)
            (me, pc, sa.port_uc, sa.port_ps, sa.spi_ps, "out"),
            (me, pc, sa.port_us, sa.port_pc, sa.spi_pc, "out"),
            (pc, me, sa.port_pc, sa.port_us, sa.spi_us, "in"),
            (pc, me, sa.port_ps, sa.port_uc, sa.spi_uc, "in"),
        ]
        for src, dst, sport, dport, spi, direction in flows:
            sel = ["sel", "src", src, "dst", dst, "proto", "udp", "sport", str(sport), "dport", str(dport)]
            self.xfrm(
                "state",
                "add",
                "src",
                src,
                "dst",
                dst,
                "proto",
                "esp",
                "spi",
                str(spi),
                "mode",
                "transport",
                "auth-trunc",
                XFRM_AUTH[sa.alg],
                auth_key,
                "96",
                "enc",
                XFRM_ENC[sa.ealg],
                enc_key,
                *sel,
            )
            self.xfrm(
                "policy",
                "add",
                "src",
                f"{src}/32",
                "dst",
                f"{dst}/32",
                "proto",
                "udp",
                "sport",
                str(sport),
                "dport",
                str(dport),
                "dir",
                direction,
                "tmpl",
                "src",
                src,
                "dst",
                dst,
                "proto",
                "esp",
                "spi",
                str(spi),
                "mode",
                "transport",
                "level",
                "required",
            )

    def remove_sas(self) -> None:
        self.xfrm("policy", "flush")
        self.xfrm("state", "flush")

    def digest(self, nonce: str, res: bytes, method: str = "REGISTER") -> str:
        uri = f"sip:{self.domain}"
        ha1 = hashlib.md5(f"{self.impi}:{self.domain}:".encode() + res).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        return (
            f'Authorization: Digest username="{self.impi}", realm="{self.domain}", nonce="{nonce}", '
            f'uri="{uri}", response="{response}", algorithm=AKAv1-MD5, qop=auth, cnonce="{cnonce}", nc={nc}'
        )

    def register_protected(self, nonce: str, res: bytes, expires: int = 600) -> SipMessage:
        """REGISTER 2 (or a re-/de-REGISTER) from port_uc to port_ps; returns the final answer.

        The S-CSCF may challenge a re- or de-REGISTER again: the UE answers the new challenge
        over the same SAs (the keys of the new vector are not installed)."""
        sa = self.sa
        for _ in range(2):
            # TS 24.229 5.1.1.2.2: a protected REGISTER carries Security-Client too.
            extra = [self.security_client(), f"Security-Verify: {self.security_server}", self.digest(nonce, res)]
            self.send(self._register(sa.port_us, extra, expires), sa.port_uc, (self.pcscf, sa.port_ps))
            answer = self.response_to("REGISTER")
            if answer.status != 401:
                return answer
            self.challenges.append(answer)
            nonce, res, _ck, _ik = self.aka(answer)
        return answer

    def register(self) -> SipMessage:
        """The whole sec-agree registration; returns the 200 (raises on anything else)."""
        nonce, res = self.take_challenge(self.register_unprotected())
        self.install_sas()
        self._auth = (nonce, res)
        answer = self.register_protected(nonce, res)
        if answer.status != 200:
            raise UeError(f"{self.name}: protected REGISTER answered {answer.first_line}")
        self.registered = answer
        return answer

    def deregister(self) -> SipMessage:
        nonce, res = self._auth
        return self.register_protected(nonce, res, expires=0)

    # --- calls --------------------------------------------------------------------------

    def sdp(self, port: int) -> str:
        return (
            f"v=0\r\no=- 1 1 IN IP4 {self.address}\r\ns=-\r\nc=IN IP4 {self.address}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        )

    def request(
        self,
        method: str,
        uri: str,
        to: str,
        call_id: str,
        cseq: int,
        *,
        tag: str,
        to_tag: str = "",
        routes: list[str] = (),
        body: str = "",
    ) -> str:
        sa = self.sa
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.address}:{sa.port_us};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <{self.impu}>;tag={tag}",
            f"To: <{to}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{self.name}@{self.address}:{sa.port_us}>",
            *[f"Route: {r}" for r in routes],
            f"Security-Verify: {self.security_server}",
            "Require: sec-agree",
            "Proxy-Require: sec-agree",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def send_request(self, text: str) -> None:
        self.send(text, self.sa.port_uc, (self.pcscf, self.sa.port_ps))

    def reply(self, request: SipMessage, status: str, *, to_tag: str, body: str = "") -> None:
        """A response from port_us back to where the request came from (the P-CSCF's port_pc)."""
        lines = [f"SIP/2.0 {status}"]
        for name in ("Via", "Record-Route"):
            lines += [f"{name}: {v}" for v in request.all(name)]
        lines += [
            f"From: {request.get('From')}",
            f"To: {request.get('To')}" + ("" if "tag=" in (request.get("To") or "") else f";tag={to_tag}"),
            f"Call-ID: {request.get('Call-ID')}",
            f"CSeq: {request.get('CSeq')}",
            f"Contact: <sip:{self.name}@{self.address}:{self.sa.port_us}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.send("\r\n".join(lines) + "\r\n\r\n" + body, self.sa.port_us, request.source)

    def next_request(self, method: str, timeout: float = 10.0) -> SipMessage:
        return self.receive(timeout, want=lambda m: m.method == method)


def new_tag() -> str:
    return os.urandom(4).hex()
