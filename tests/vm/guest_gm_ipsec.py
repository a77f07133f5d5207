"""Runs inside the vm tier's guest (Debian 13 kernel, with ESP): Gm protected by IPsec, end to end.

The host (tests/vm/test_gm_ipsec.py) renders every config with the product's renderers into
the work share and boots the VM; this program, run by the guest's init as root, then:

- builds the network: the core (Valkey, rtpengine, the Cx HSS double, Kamailio as S-, I- and
  P-CSCF) in the guest's own namespace, the P-CSCF's Gm address on a veth whose other end is
  the UEs' namespace; a second veth leads to a "rogue" namespace that can forge packets
  with a UE's address;
- starts the daemons on the rendered files and waits until each answers;
- drives two ImsUeTestDouble UEs (tests/doubles/ims_ue.py) through sec-agree registration,
  a call over the protected ports, unprotected requests to a protected port, the expiry of
  the pending contacts of their first REGISTERs, and de-registration, checking the kernel's
  SAs and counters on both sides;
- writes work/result.json (one entry per check, with details) and the daemons' logs, and
  exits 1 if any check failed.

usage (in the guest): python3 -m tests.vm.guest_gm_ipsec /ims/work
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path

from tests.doubles.cx_hss import CxHssTestDouble, Subscriber
from tests.doubles.diameter import DIAMETER_SUCCESS
from tests.doubles.ims_ue import ImsUeTestDouble, SipMessage, UeError, new_tag
from tests.doubles.rx_pcrf import RxPcrfTestDouble
from tests.netns import NetNamespace

UE_NS, ROGUE_NS = "ue", "rogue"


class Guest:
    def __init__(self, work: Path):
        self.work = work
        self.sc = json.loads((work / "scenario.json").read_text())
        self.checks: list[dict] = []
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []
        # Daemons log to the guest's tmpfs (9p writes are slow); copied to work/logs at the end.
        self.logs = Path("/tmp/ims-logs")
        self.logs.mkdir(exist_ok=True)

    # --- bookkeeping ---------------------------------------------------------------------

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail})
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)
        return ok

    def sh(self, *argv: str, ns: str | None = None) -> str:
        full = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
        out = subprocess.run(full, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(full)}: {out.stderr.strip()}")
        return out.stdout

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
            )
        self.procs.append((name, proc, log))
        return proc

    def stop_all(self) -> None:
        for _name, proc, _log in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # --- network -------------------------------------------------------------------------

    def network(self) -> None:
        net = self.sc["net"]
        for ns in (UE_NS, ROGUE_NS):
            self.sh("ip", "netns", "add", ns)
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.sh("ip", "link", "set", "lo", "up")
        self.sh("ip", "link", "add", "gm0", "type", "veth", "peer", "name", "ue0", "netns", UE_NS)
        self.sh("ip", "addr", "add", f"{net['pcscf']}/24", "dev", "gm0")
        self.sh("ip", "link", "set", "gm0", "up")
        for address in net["ues"] + [net["stranger"]]:
            self.sh("ip", "-n", UE_NS, "addr", "add", f"{address}/24", "dev", "ue0")
        self.sh("ip", "-n", UE_NS, "link", "set", "ue0", "up")
        # The rogue end has no address on the guest's side: it only sends, forging a UE's source.
        self.sh("ip", "link", "add", "rogue0", "type", "veth", "peer", "name", "r0", "netns", ROGUE_NS)
        self.sh("ip", "link", "set", "rogue0", "up")
        self.sh("ip", "-n", ROGUE_NS, "addr", "add", f"{net['ues'][0]}/32", "dev", "r0")
        self.sh("ip", "-n", ROGUE_NS, "link", "set", "r0", "up")
        self.sh("ip", "-n", ROGUE_NS, "route", "add", f"{net['pcscf']}/32", "dev", "r0")
        Path("/etc/hosts").write_text(self.sc["hosts"])
        Path("/etc/resolv.conf").write_text("# hosts file only\noptions attempts:1 timeout:1\n")

    # --- daemons -------------------------------------------------------------------------

    def sip_options(self, address: str, port: int = 5060) -> str | None:
        branch = uuid.uuid4().hex
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", 0))
            local = sock.getsockname()[1]
            sock.settimeout(0.5)
            sock.sendto(
                (
                    f"OPTIONS sip:{address}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{branch};rport\r\n"
                    f"Max-Forwards: 2\r\nFrom: <sip:probe@localhost>;tag={branch[:8]}\r\nTo: <sip:{address}:{port}>\r\n"
                    f"Call-ID: {branch}@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                (address, port),
            )
            return sock.recvfrom(65535)[0].decode(errors="replace").split("\r\n", 1)[0]
        except OSError:
            return None
        finally:
            sock.close()

    def wait(self, predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what}: the process exited ({proc.returncode})")
            if predicate():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{what}: not within {timeout}s")

    def daemons(self) -> None:
        sc, w = self.sc, self.work
        etc = Path(sc["config_dir"])
        shutil.copytree(w / "etc", etc)
        valkey = sc["valkey"]
        proc = self.start("valkey", ["valkey-server", str(etc / "valkey" / "valkey.conf")])
        cli = ["valkey-cli", "-h", valkey["address"], "-p", str(valkey["port"])]
        env = {**os.environ, "REDISCLI_AUTH": valkey["password"]}
        self.wait(
            lambda: subprocess.run(cli + ["ping"], env=env, capture_output=True, text=True).stdout.strip() == "PONG",
            30,
            "Valkey answering PING",
            proc,
        )
        subprocess.run(
            cli + ["-n", str(valkey["icscf_db"])],
            env=env,
            input=(w / "icscf-seed.valkey").read_text(),
            capture_output=True,
            text=True,
            check=True,
        )
        self.start("rtpengine", ["rtpengine", *sc["rtpengine_args"]])

        hss_nf = sc["hss"]
        subscribers = [
            Subscriber(
                impi=u["impi"],
                k=bytes.fromhex(u["k"]),
                op=bytes.fromhex(u["op"]),
                amf=bytes.fromhex(u["amf"]),
                impus=[u["impu"]],
            )
            for u in sc["ues"]
        ]
        self.hss = CxHssTestDouble(
            subscribers,
            origin_host=hss_nf["fqdn"],
            origin_realm=hss_nf["realm"],
            bind_address=hss_nf["address"],
            port=hss_nf["port"],
            mandatory_capabilities=[0],
        )
        self.hss.start()
        pcrf_nf = sc["pcrf"]
        self.pcrf = RxPcrfTestDouble(
            origin_host=pcrf_nf["fqdn"], origin_realm=pcrf_nf["realm"], bind_address=pcrf_nf["address"], port=pcrf_nf["port"]
        )
        self.pcrf.start()
        for role in ("scscf", "icscf", "pcscf"):
            nf = sc["cscf"][role]
            cfg = etc / role / "kamailio.cfg"
            proc = self.start(f"kamailio-{role}", ["kamailio", "-DD", "-E", *nf["args"], "-f", str(cfg)])
            self.wait(
                lambda a=nf["address"]: (self.sip_options(a) or "").startswith("SIP/2.0 200"),
                90,
                f"{role} answering OPTIONS",
                proc,
            )
            if role != "pcscf":
                self.hss.wait_for_peer(nf["fqdn"], timeout=60)
            else:
                self.pcrf.wait_for_peer(nf["fqdn"], timeout=60)

    # --- the kernel's view ----------------------------------------------------------------

    def sa_counts(self, ns: str | None, address: str) -> dict[int, int]:
        """SPI -> packets, for the ESP SAs to or from `address` in a namespace (None: the core)."""
        text = self.sh("ip", "-s", "xfrm", "state", "list", ns=ns)
        counts = {}
        for block in re.split(r"(?m)^(?=src )", text):
            head = re.match(r"src (\S+) dst (\S+)\s+proto esp spi (0x[0-9a-f]+)", block)
            if not head or address not in (head.group(1), head.group(2)):
                continue
            packets = re.search(r"lifetime current:\s*\n\s*\d+\(bytes\), (\d+)\(packets\)", block)
            counts[int(head.group(3), 16)] = int(packets.group(1)) if packets else -1
        return counts

    def policies(self, ns: str | None, address: str) -> int:
        text = self.sh("ip", "xfrm", "policy", "list", ns=ns)
        return sum(1 for block in re.split(r"(?m)^(?=src )", text) if address in block.split("\n", 1)[0])

    @staticmethod
    def xfrm_stat(name: str) -> int | None:
        try:
            for line in Path("/proc/net/xfrm_stat").read_text().splitlines():
                key, value = line.split()
                if key == name:
                    return int(value)
        except FileNotFoundError:
            return None
        return None

    # --- the scenario ----------------------------------------------------------------------

    def ues(self) -> list[ImsUeTestDouble]:
        ns = NetNamespace(UE_NS, hosts={})
        made = []
        for u, address in zip(self.sc["ues"], self.sc["net"]["ues"], strict=False):
            ue = ImsUeTestDouble(
                name=u["name"],
                impi=u["impi"],
                impu=u["impu"],
                k=bytes.fromhex(u["k"]),
                op=bytes.fromhex(u["op"]),
                address=address,
                pcscf=self.sc["net"]["pcscf"],
                domain=self.sc["domain"],
                netns=UE_NS,
            )
            ue.open(ns.entered)
            made.append(ue)
        return made

    def registration(self, ue: ImsUeTestDouble) -> None:
        challenge = ue.register_unprotected()
        self.check(
            f"{ue.name}: 401 carries Security-Server",
            bool(challenge.get("Security-Server")),
            challenge.get("Security-Server") or challenge.first_line,
        )
        nonce, res = ue.take_challenge(challenge)
        core, policies = self.sa_counts(None, ue.address), self.policies(None, ue.address)
        (self.logs / f"xfrm-after-401-{ue.name}.txt").write_text(
            self.sh("ip", "-s", "xfrm", "state") + self.sh("ip", "xfrm", "policy")
        )
        self.check(
            f"{ue.name}: the P-CSCF made 4 ESP SAs and their policies for the UE at the 401",
            len(core) == 4 and policies >= 4,
            f"SAs (spi: packets) {core}, {policies} policies",
        )
        algorithms = [
            (block.count("auth-trunc hmac(sha1)"), block.count("enc cbc(aes)"))
            for block in re.split(r"(?m)^(?=src )", self.sh("ip", "xfrm", "state"))
            if ue.address in block.split("\n", 1)[0]
        ]
        self.check(
            f"{ue.name}: the P-CSCF's SAs encrypt (AES-CBC with CK) and authenticate (HMAC-SHA-1-96 with IK)",
            len(algorithms) == 4 and all(a == (1, 1) for a in algorithms),
            f"(auth, enc) per SA: {algorithms}",
        )
        ue.install_sas()
        ue._auth = (nonce, res)
        answer = ue.register_protected(nonce, res)
        self.check(f"{ue.name}: protected REGISTER answered 200", answer.status == 200, answer.first_line)
        self.check_protected(ue, answer, f"{ue.name}: the 200 to the protected REGISTER")
        aars = [r for r in self.pcrf.requests_of("AAR") if r.framed_ip == ue.address and r.signalling]
        self.check(
            f"{ue.name}: the PCRF authorised the UE's signalling (AAR for its address)",
            any(r.result_code == DIAMETER_SUCCESS for r in aars),
            f"signalling AARs for {ue.address}: {[(r.session_id, r.result_code) for r in aars]}",
        )
        mine = self.sa_counts(UE_NS, ue.address)
        sa = ue.sa
        self.check(
            f"{ue.name}: the REGISTER left and the 200 arrived as ESP (UE's SA counters)",
            mine.get(sa.spi_ps, 0) >= 1 and mine.get(sa.spi_uc, 0) + mine.get(sa.spi_us, 0) >= 1,
            f"UE SAs (spi: packets) {mine}; out uc->ps spi {sa.spi_ps}, in ps->uc {sa.spi_uc}, pc->us {sa.spi_us}",
        )

    def check_protected(self, ue: ImsUeTestDouble, msg: SipMessage, what: str) -> bool:
        """`msg` came from one of the P-CSCF's protected ports to one of the UE's (so over an SA:
        the UE's inbound policies require ESP there)."""
        sa = ue.sa
        pairs = {(sa.port_ps, sa.port_uc), (sa.port_pc, sa.port_us)}
        return self.check(
            f"{what} came over the UE's SAs",
            msg.source[0] == ue.pcscf and (msg.source[1], msg.local_port) in pairs,
            f"{msg.first_line} from {msg.source} to port {msg.local_port}; SA port pairs {sorted(pairs)}",
        )

    def call(self, alice: ImsUeTestDouble, bob: ImsUeTestDouble) -> None:
        before = self.sa_counts(UE_NS, bob.address)
        call_id, tag = f"call-{uuid.uuid4().hex}@{alice.address}", new_tag()
        invite = alice.request("INVITE", bob.impu, bob.impu, call_id, 1, tag=tag, body=alice.sdp(40000))
        alice.send_request(invite)
        incoming = bob.next_request("INVITE", timeout=20)
        self.check_protected(bob, incoming, "call: bob's INVITE")
        bob_tag = new_tag()
        bob.reply(incoming, "180 Ringing", to_tag=bob_tag)
        bob.reply(incoming, "200 OK", to_tag=bob_tag, body=bob.sdp(40002))
        ok = alice.response_to("INVITE", timeout=20)
        self.check("call: alice got 200 to her INVITE", ok.status == 200, ok.first_line)
        self.check_protected(alice, ok, "call: alice's 200")
        if ok.status != 200:
            return
        routes = list(reversed(ok.all("Record-Route")))
        routes = [r for header in routes for r in reversed([x.strip() for x in header.split(",")])]
        to_tag = re.search(r"tag=([^;>\s]+)", ok.get("To")).group(1)
        target = re.search(r"<([^>]+)>", ok.get("Contact")).group(1)
        alice.send_request(alice.request("ACK", target, bob.impu, call_id, 1, tag=tag, to_tag=to_tag, routes=routes))
        bob.next_request("ACK", timeout=20)
        alice.send_request(alice.request("BYE", target, bob.impu, call_id, 2, tag=tag, to_tag=to_tag, routes=routes))
        bye = bob.next_request("BYE", timeout=20)
        self.check_protected(bob, bye, "call: bob's BYE")
        bob.reply(bye, "200 OK", to_tag=bob_tag)
        done = alice.response_to("BYE", timeout=20)
        self.check("call: BYE answered 200 end to end", done.status == 200, done.first_line)
        self.check_protected(alice, done, "call: alice's 200 to BYE")
        after = self.sa_counts(UE_NS, bob.address)
        grew = {spi: (before.get(spi, 0), n) for spi, n in after.items()}
        self.check(
            "call: bob's inbound and outbound ESP counters rose during the call",
            after.get(bob.sa.spi_us, 0) > before.get(bob.sa.spi_us, 0)
            and after.get(bob.sa.spi_pc, 0) > before.get(bob.sa.spi_pc, 0),
            f"spi: (before, after) {grew}",
        )

    def unprotected(self, alice: ImsUeTestDouble, stranger: str) -> None:
        """A forged plain request from alice's address and protected client port to her
        protected server port at the P-CSCF: the kernel drops it (policy requires ESP)."""
        mismatch = self.xfrm_stat("XfrmInTmplMismatch")
        ns = NetNamespace(ROGUE_NS, hosts={})
        with ns.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((alice.address, alice.sa.port_uc))
        branch = uuid.uuid4().hex
        options = (
            f"OPTIONS sip:{alice.pcscf}:{alice.sa.port_ps} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {alice.address}:{alice.sa.port_uc};branch=z9hG4bK{branch};rport\r\nMax-Forwards: 2\r\n"
            f"From: <{alice.impu}>;tag={branch[:8]}\r\nTo: <sip:{alice.pcscf}>\r\nCall-ID: {branch}@rogue\r\n"
            f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        for _ in range(3):
            sock.sendto(options.encode(), (alice.pcscf, alice.sa.port_ps))
        sock.close()
        try:
            got = alice.receive(3, want=lambda m: branch in (m.get("Via") or ""))
            answered = got.first_line
        except UeError:
            answered = None
        after = self.xfrm_stat("XfrmInTmplMismatch")
        self.check(
            "unprotected OPTIONS to a protected port, from the UE's own address and port: dropped by the kernel",
            answered is None and mismatch is not None and after - mismatch >= 3,
            f"answer: {answered}; XfrmInTmplMismatch {mismatch} -> {after}",
        )
        # From an address with no SA: it reaches Kamailio's protected socket, which must refuse it.
        ue_ns = NetNamespace(UE_NS, hosts={})
        with ue_ns.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((stranger, 0))
        port = sock.getsockname()[1]
        sock.settimeout(5)
        invite = (
            f"INVITE sip:bob@{self.sc['domain']} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {stranger}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\nMax-Forwards: 70\r\n"
            f"From: <{alice.impu}>;tag=x1\r\nTo: <sip:bob@{self.sc['domain']}>\r\nCall-ID: {uuid.uuid4().hex}@stranger\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:x@{stranger}:{port}>\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(invite.encode(), (alice.pcscf, alice.sa.port_ps))
        try:
            reply = SipMessage.parse(sock.recvfrom(65535)[0], (alice.pcscf, 0), port).first_line
        except OSError:
            reply = None
        sock.close()
        self.check(
            "unprotected INVITE to a protected port from an address without SAs: refused 403",
            reply is not None and reply.startswith("SIP/2.0 403"),
            f"answer: {reply}",
        )

    def deregistration(self, ue: ImsUeTestDouble, others: list[ImsUeTestDouble]) -> None:
        answer = ue.deregister()
        self.check(f"{ue.name}: de-REGISTER answered 200", answer.status == 200, answer.first_line)
        self.check_protected(ue, answer, f"{ue.name}: the 200 to the de-REGISTER")
        state = self.hss.registration_state(ue.impu)
        self.check(f"{ue.name}: the HSS holds the UE de-registered", state.value != "REGISTERED", str(state))
        deadline = time.monotonic() + self.sc["sa_removal_timeout"]
        while time.monotonic() < deadline and (self.sa_counts(None, ue.address) or self.policies(None, ue.address)):
            time.sleep(0.5)
        left = self.sa_counts(None, ue.address)
        contacts = self.kamcmd("ulpcscf.status") if left else ""
        # The registration's Rx session (TS 29.214 4.4.5a) ends with it: STR from the P-CSCF.
        sessions = {r.session_id for r in self.pcrf.requests_of("AAR") if r.framed_ip == ue.address}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sessions & set(self.pcrf.open_sessions):
            time.sleep(0.5)
        self.check(
            f"{ue.name}: the PCRF holds no Rx session of the UE after the registration ended",
            not sessions & set(self.pcrf.open_sessions),
            f"open: {sorted(sessions & set(self.pcrf.open_sessions))} of the UE's {sorted(sessions)}",
        )
        self.check(
            f"{ue.name}: the P-CSCF removed the UE's SAs and policies when the registration ended",
            not left and self.policies(None, ue.address) == 0,
            f"left: {left}; P-CSCF contacts: {contacts[-1500:]}",
        )
        for other in others:
            counts = self.sa_counts(None, other.address)
            self.check(f"{ue.name} gone, {other.name}'s SAs stay", len(counts) == 4, str(counts))

    def kamcmd(self, *args: str) -> str:
        ctl = f"unix:{self.sc['config_dir']}/pcscf/kamailio_ctl"
        result = subprocess.run(["kamcmd", "-s", ctl, *args], capture_output=True, text=True)
        return result.stdout + result.stderr

    def pending_expiry(self, ues: list[ImsUeTestDouble], registered_at: float) -> None:
        """The P-CSCF keeps a pending contact for each unprotected REGISTER (the SAs made at the
        401 hang on it) until pending_reg_expires after it. Its expiry must leave the registered
        UE's SAs alone: a UE that lost them could neither be reached nor de-register."""
        deadline = registered_at + self.sc["pending_expiry_timeout"]
        expired = -1
        while time.monotonic() < deadline:
            found = re.search(r"expired_contacts = (\d+)", self.kamcmd("stats.get_statistics", "ims_usrloc_pcscf:"))
            expired = int(found.group(1)) if found else -1
            if expired >= len(ues):
                break
            time.sleep(1)
        self.check(
            "the pending contacts of the unprotected REGISTERs expired",
            expired >= len(ues),
            f"ims_usrloc_pcscf:expired_contacts = {expired} after {self.sc['pending_expiry_timeout']} s",
        )
        for ue in ues:
            counts = self.sa_counts(None, ue.address)
            self.check(f"{ue.name}: the SAs outlive the pending contact", len(counts) == 4, str(counts))

    def run(self) -> int:
        t0 = time.monotonic()
        try:
            self.network()
            self.daemons()
            self.check("daemons up", True, f"{time.monotonic() - t0:.1f}s after the script started")
            alice, bob = self.ues()
            for ue in (alice, bob):
                self.registration(ue)
            registered_at = time.monotonic()
            self.call(alice, bob)
            self.unprotected(alice, self.sc["net"]["stranger"])
            self.pending_expiry([alice, bob], registered_at)
            self.deregistration(alice, [bob])
            self.deregistration(bob, [])
            errors = self.hss.errors
            self.check("the HSS double had no errors", not errors, "; ".join(errors))
            errors = self.pcrf.errors
            self.check("the PCRF double had no errors", not errors, "; ".join(errors))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a failed check with its trace
            self.check("scenario ran to the end", False, f"{exc!r}\n{traceback.format_exc()}")
        finally:
            for double in (getattr(self, "hss", None), getattr(self, "pcrf", None)):
                if double is not None:
                    double.stop()
            self.stop_all()
            for ns in (UE_NS, ROGUE_NS):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.copytree(self.logs, self.work / "logs", dirs_exist_ok=True)
        (self.work / "result.json").write_text(
            json.dumps({"checks": self.checks, "seconds": time.monotonic() - t0}, indent=1)
        )
        return 0 if self.checks and all(c["ok"] for c in self.checks) else 1


if __name__ == "__main__":
    sys.exit(Guest(Path(sys.argv[1])).run())
