"""Live: overload control (config/kamailio/{pcscf,icscf,scscf}/route/overload.cfg).

The core is made slow the blunt way: the I-CSCF is stopped (SIGSTOP), so every REGISTER the
P-CSCF relays stays pending there. With the limit set low (pcscfOverloadPendingLimit, its
smallest allowed value), the P-CSCF must then answer a new REGISTER at once with 503 and a
Retry-After, and still admit a REGISTER that answers a challenge (up to four times the limit).
Each REGISTER comes from its own UE address, so pike's per-address ban plays no part.
The P-CSCF is restarted on the default settings and the I-CSCF resumed afterwards, and a
UE registers again to show the core recovered.

The rate gauge: with pcscfOverloadRegisterRate at 3, a burst of first REGISTERs within a
second gets 503s past the third. The memory gauge of the S-CSCF: see its test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import uuid

from components.render import kamailio as render_kamailio
from tests.live import sipp
from tests.profiles import TEST_VALKEY_PASSWORD, loopback_settings

LIMIT = 10  # the smallest pcscfOverloadPendingLimit allowed


def _start_pcscf(core, **overrides) -> None:
    settings = loopback_settings(stack="live", pcscfIpsec=False, pcscfRx=True, **overrides)
    config_dir = core.workdir / "pcscf"
    files = render_kamailio.render(settings, "pcscf", config_dir=str(config_dir), bind_address=True)
    files.update(render_kamailio.render_secrets(settings, "pcscf", TEST_VALKEY_PASSWORD))
    for rel, text in files.items():
        (config_dir / rel).write_text(text, encoding="utf-8")
    core.kamailio["pcscf"].stop()
    core.start_cscf("pcscf")


def _register(core, n: int, authorization: str, wait: float, user: str | None = None) -> str | None:
    """One REGISTER from UE address 127.0.3.n (as user `ov<n>` unless `user` is given);
    the first final answer's start line and Retry-After, or None if no final answer came
    within `wait` seconds."""
    domain = core.settings.ims_domain
    address, branch = f"127.0.3.{n}", uuid.uuid4().hex
    user = user or f"ov{n}"
    with core.ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((address, 5060))
        request = (
            f"REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {address}:5060;branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{user}@{domain}>;tag={branch[:8]}\r\nTo: <sip:{user}@{domain}>\r\n"
            f"Call-ID: {branch}@overload\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{address}:5060>\r\nExpires: 600\r\n"
            f"{authorization.format(user=f'{user}@{domain}', domain=domain)}\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (core.settings.nf("pcscf").address, render_kamailio.SIP_PORT))
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535).decode(errors="replace")
            except TimeoutError:
                break
            start = data.split("\r\n", 1)[0]
            if not re.match(r"SIP/2.0 1\d\d", start):
                retry = re.search(r"(?mi)^Retry-After:\s*(\d+)", data)
                return f"{start} | Retry-After {retry.group(1) if retry else None}"
        return None
    finally:
        sock.close()


INITIAL = 'Authorization: Digest username="{user}", realm="{domain}", nonce="", uri="sip:{domain}", response=""'
# A challenge answer as the P-CSCF sees it (it checks only that a response is there).
ANSWER = 'Authorization: Digest username="{user}", realm="{domain}", nonce="bm9uY2U=", uri="sip:{domain}", response="0123456789abcdef0123456789abcdef", algorithm=AKAv1-MD5'


def test_pcscf_sheds_new_registrations_with_503_when_pending_work_passes_the_limit(core):
    icscf = core.kamailio["icscf"].pid
    _start_pcscf(core, pcscfOverloadPendingLimit=LIMIT, pcscfOverloadRetryAfter=10)
    os.killpg(icscf, signal.SIGSTOP)
    try:
        # LIMIT REGISTERs the stopped I-CSCF will not answer: all admitted, none answered.
        early = [_register(core, n, INITIAL, wait=0.05) for n in range(1, LIMIT + 1)]
        assert early == [None] * LIMIT, f"below the limit every REGISTER must be admitted: {early}"
        time.sleep(0.5)  # the Rx AARs of those REGISTERs are answered; all wait on the I-CSCF
        shed = _register(core, LIMIT + 1, INITIAL, wait=2)
        assert shed is not None and shed.startswith("SIP/2.0 503"), f"a new REGISTER past the limit: {shed}"
        retry = int(shed.rsplit(" ", 1)[-1])
        assert 10 <= retry < 20, f"Retry-After {retry}: pcscfOverloadRetryAfter plus jitter below it"
        # A challenge answer already cost the core a MAR: admitted (no 503) below four times the limit.
        answered = _register(core, LIMIT + 2, ANSWER, wait=1)
        assert answered is None or not answered.startswith("SIP/2.0 503"), f"a challenge answer was shed: {answered}"
    finally:
        os.killpg(icscf, signal.SIGCONT)
        _start_pcscf(core)
    ue = core.users.bob
    run = core.sipp(ue, sipp.register(ue, core.settings.ims_domain), "overload-recovered")
    assert run.returncode == 0, run.explain()


RATE = 3


def _burst(core, first: int, count: int, wait: float) -> list[str | None]:
    """`count` first REGISTERs from UE addresses 127.0.3.first... sent at once; each one's
    final answer (start line | Retry-After) or None."""
    domain = core.settings.ims_domain
    socks = []
    with core.ns.entered():
        for n in range(first, first + count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((f"127.0.3.{n}", 5060))
            sock.settimeout(0.05)
            socks.append((n, sock))
    try:
        for n, sock in socks:
            address, branch = f"127.0.3.{n}", uuid.uuid4().hex
            auth = INITIAL.format(user=f"ov{n}@{domain}", domain=domain)
            sock.sendto(
                (
                    f"REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {address}:5060;branch=z9hG4bK{branch};rport\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:ov{n}@{domain}>;tag={branch[:8]}\r\nTo: <sip:ov{n}@{domain}>\r\n"
                    f"Call-ID: {branch}@burst\r\nCSeq: 1 REGISTER\r\nContact: <sip:ov{n}@{address}:5060>\r\n"
                    f"Expires: 600\r\n{auth}\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                (core.settings.nf("pcscf").address, render_kamailio.SIP_PORT),
            )
        answers: dict[int, str | None] = {n: None for n, _ in socks}
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for n, sock in socks:
                try:
                    data = sock.recv(65535).decode(errors="replace")
                except TimeoutError:
                    continue
                start = data.split("\r\n", 1)[0]
                if not re.match(r"SIP/2.0 1\d\d", start):
                    retry = re.search(r"(?mi)^Retry-After:\s*(\d+)", data)
                    answers[n] = f"{start} | Retry-After {retry.group(1) if retry else None}"
        return [answers[n] for n, _ in socks]
    finally:
        for _, sock in socks:
            sock.close()


def test_pcscf_sheds_first_registers_past_the_rate_with_503(core):
    """More first REGISTERs in a second than pcscfOverloadRegisterRate: the rest get 503 and
    a Retry-After at once. The I-CSCF is stopped, so an admitted REGISTER gets no final
    answer (and none can be mistaken for a shed one)."""
    icscf = core.kamailio["icscf"].pid
    _start_pcscf(core, pcscfOverloadRegisterRate=RATE, pcscfOverloadRetryAfter=10)
    os.killpg(icscf, signal.SIGSTOP)
    try:
        answers = _burst(core, 50, 10, wait=2)
    finally:
        os.killpg(icscf, signal.SIGCONT)
        _start_pcscf(core)
    shed = [a for a in answers if a is not None]
    admitted = answers.count(None)
    assert all(a.startswith("SIP/2.0 503") for a in shed), answers
    assert all(10 <= int(a.rsplit(" ", 1)[-1]) < 20 for a in shed), f"Retry-After outside 10-19 s: {answers}"
    # Within one second at most RATE are admitted; the burst may straddle two seconds.
    assert RATE <= admitted <= 2 * RATE, f"{admitted} of 10 admitted with the rate at {RATE}/s: {answers}"


def _start_scscf(core, pool_short: bool) -> None:
    """The S-CSCF on its shipped config, rendered by the product's renderer; with
    `pool_short`, its memory gauge's threshold is raised to the whole pool, the one value
    changed, since filling 100 MB of shared memory is no bounded test."""
    config_dir = core.workdir / "scscf"
    files = render_kamailio.render(core.settings, "scscf", config_dir=str(config_dir), bind_address=True)
    if pool_short:
        pool = core.settings.kamailio["scscf"].shm_mb * 2**20
        defines, count = re.subn(r"(?m)^#!define OVERLOAD_SHM_FREE \d+$", f"#!define OVERLOAD_SHM_FREE {pool}", files["defines.cfg"])
        assert count == 1, "the rendered defines carry no OVERLOAD_SHM_FREE"
        files["defines.cfg"] = defines
    for rel, text in files.items():
        (config_dir / rel).write_text(text, encoding="utf-8")
    core.kamailio["scscf"].stop()
    core.start_cscf("scscf")


def test_scscf_short_of_shared_memory_sheds_new_registrations_with_503(core):
    """An S-CSCF whose pool is short (less free than its threshold) answers a new
    registration with 503 and a Retry-After, and the UE gets that 503 through the I- and
    P-CSCF (not a 504); a REGISTER answering a challenge is still taken (its threshold is
    half); the restored S-CSCF registers a UE again."""
    alice = core.users.alice
    user = alice.impi.split("@", 1)[0]
    _start_scscf(core, pool_short=True)
    try:
        shed = _register(core, 60, INITIAL, wait=3, user=user)
        assert shed is not None and shed.startswith("SIP/2.0 503"), f"a new REGISTER to a short S-CSCF: {shed}"
        retry = int(shed.rsplit(" ", 1)[-1])
        assert 10 <= retry < 20, f"Retry-After {retry}: pcscfOverloadRetryAfter plus jitter below it"
        answered = _register(core, 61, ANSWER, wait=3, user=user)
        assert answered is not None and not answered.startswith("SIP/2.0 503"), f"a challenge answer: {answered}"
    finally:
        _start_scscf(core, pool_short=False)
    run = core.sipp(alice, sipp.register(alice, core.settings.ims_domain), "overload-scscf-recovered")
    assert run.returncode == 0, run.explain()
