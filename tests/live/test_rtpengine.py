"""Live: rtpengine 12.5 (the Debian 13 root) runs the rendered config on loopback; media really
flows through it.

Two UEs are plain UDP sockets on their own loopback addresses. The NG exchange is what the
P-CSCF sends (offer with the product's offer flags, answer, delete); RTP sent by one UE must
arrive at the other from rtpengine's address, and rtpengine's own counters must agree.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time

import pytest

from components.render import rtpengine as render_rtpengine
from tests import debian_root
from tests.live.ng_client import from_kamailio_flags
from tests.live.rtpengine_daemon import running_rtpengine
from tests.profiles import loopback_settings
from tests.tooling import ROOT

UE_A = "127.0.0.61"
UE_B = "127.0.0.62"
PACKETS = 50
NG_PING_SCRIPT = ROOT / "dockerfiles" / "rtpengine" / "alpine" / "rtpengine-ng-ping"


@pytest.fixture(scope="module")
def settings():
    return loopback_settings()


@pytest.fixture(scope="module")
def rtpengine(settings):
    with running_rtpengine(settings) as daemon:
        yield daemon


def sdp(address: str, port: int, payload_types: str = "0 101") -> str:
    return (
        "v=0\r\n"
        f"o=- 1 1 IN IP4 {address}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {address}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP {payload_types}\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=sendrecv\r\n"
    )


def media_of(body: str) -> tuple[str, int]:
    """(connection address, audio port) of an SDP body."""
    lines = body.split("\r\n")
    address = next(line.split()[-1] for line in lines if line.startswith("c=IN IP4 "))
    port = next(int(line.split()[1]) for line in lines if line.startswith("m=audio "))
    return address, port


def rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes(160)


def ue_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    sock.settimeout(0.5)
    return sock


def receive_all(sock: socket.socket, expected: int, seconds: float = 3.0) -> list[tuple[bytes, tuple[str, int]]]:
    got = []
    deadline = time.monotonic() + seconds
    while len(got) < expected and time.monotonic() < deadline:
        try:
            got.append(sock.recvfrom(2048))
        except TimeoutError:
            pass
    return got


def test_ng_answers_ping_and_the_image_probe_script_says_ready(rtpengine, tmp_path):
    assert rtpengine.ng.ping() == "pong"
    # The image's probe script under the root's busybox sh with its socat (as in the Alpine image).
    script = tmp_path / NG_PING_SCRIPT.name
    script.write_bytes(NG_PING_SCRIPT.read_bytes())

    def ng_ping(port: str) -> subprocess.CompletedProcess:
        argv = debian_root.command(["busybox", "sh", str(script), rtpengine.address, port])
        return subprocess.run(argv, capture_output=True, timeout=10)

    ready = ng_ping("2223")
    assert ready.returncode == 0, ready.stderr
    # Nothing speaks NG there: the probe must fail, not merely find an open port.
    wrong = ng_ping("2224")
    assert wrong.returncode != 0
    assert b"did not answer ping with pong" in wrong.stderr


def test_the_daemon_runs_the_rendered_userspace_config_unprivileged(rtpengine, settings):
    assert (rtpengine.config_dir / "rtpengine.conf").read_text() == render_rtpengine.render(settings)["rtpengine.conf"]
    assert "KERNEL" not in rtpengine.log()  # table = -1: no kernel table was even tried
    with open(f"/proc/{rtpengine.process.pid}/status") as status:
        uid_line = next(line for line in status if line.startswith("Uid:"))
    if os.geteuid() == 0:
        assert uid_line.split()[1] == "65532", uid_line


def test_rtp_from_ue_a_reaches_ue_b_through_rtpengine_and_stops_after_delete(rtpengine, settings):
    ng = rtpengine.ng
    call_id = f"live-media-{time.monotonic_ns()}"
    flags = from_kamailio_flags(render_rtpengine.offer_flags(settings))
    a, b = ue_socket(UE_A), ue_socket(UE_B)
    try:
        offer = ng.command(
            "offer", **{"call-id": call_id, "from-tag": "ue-a", "sdp": sdp(UE_A, a.getsockname()[1]), **flags}
        )
        assert offer["result"] == "ok", offer
        to_b = media_of(offer["sdp"])
        answer = ng.command(
            "answer",
            **{
                "call-id": call_id,
                "from-tag": "ue-a",
                "to-tag": "ue-b",
                "sdp": sdp(UE_B, b.getsockname()[1]),
                **flags,
            },
        )
        assert answer["result"] == "ok", answer
        to_a = media_of(answer["sdp"])

        # The SDP each UE sees points at rtpengine, on a port of the rendered range.
        for address, port in (to_b, to_a):
            assert address == rtpengine.address
            assert settings.media.port_min <= port <= settings.media.port_max
        assert f"o=- 1 1 IN IP4 {rtpengine.address}" in offer["sdp"]

        for seq in range(PACKETS):
            a.sendto(rtp(seq, 0xA), to_a)
            b.sendto(rtp(seq, 0xB), to_b)
        at_b = receive_all(b, PACKETS)
        at_a = receive_all(a, PACKETS)
        assert len(at_b) == PACKETS and len(at_a) == PACKETS
        assert {source for _, source in at_b} == {to_b}  # B hears A only via rtpengine
        assert {source for _, source in at_a} == {to_a}
        assert all(struct.unpack("!I", data[8:12])[0] == 0xA for data, _ in at_b)

        query = ng.command("query", **{"call-id": call_id})
        assert query["result"] == "ok", query
        assert query["totals"]["RTP"]["packets"] >= 2 * PACKETS

        deleted = ng.command("delete", **{"call-id": call_id, "from-tag": "ue-a"})
        assert deleted["result"] == "ok", deleted
        gone = ng.command("query", **{"call-id": call_id})
        assert gone["result"] == "error" and "Unknown call-id" in gone.get("error-reason", ""), gone
        (interface,) = ng.command("statistics")["statistics"]["interfaces"]
        assert interface["address"] == rtpengine.address and interface["ports"]["used"] == 0

        # The ports are closed: media sent to them goes nowhere.
        for seq in range(5):
            a.sendto(rtp(PACKETS + seq, 0xA), to_a)
        assert receive_all(b, 1, seconds=1.0) == []
    finally:
        a.close()
        b.close()


def test_ubuntu_transcoding_flags_add_the_codec_in_the_sdp(rtpengine):
    # rtpengine 10.5 on Debian has the same ffmpeg transcoding as the ubuntu image.
    ubuntu = loopback_settings(rtpengineVariant="ubuntu", rtpengineTranscodingCodecs=["PCMA"])
    call_id = f"live-transcode-{time.monotonic_ns()}"
    offer = rtpengine.ng.command(
        "offer",
        **{
            "call-id": call_id,
            "from-tag": "ue-a",
            "sdp": sdp(UE_A, 40100),
            **from_kamailio_flags(render_rtpengine.offer_flags(ubuntu)),
        },
    )
    try:
        assert offer["result"] == "ok", offer
        assert "a=rtpmap:8 PCMA/8000" in offer["sdp"]
        assert "a=rtpmap:0 PCMU/8000" in offer["sdp"]
    finally:
        rtpengine.ng.command("delete", **{"call-id": call_id, "from-tag": "ue-a"})


def test_a_requested_kernel_table_falls_back_to_userspace(settings):
    # Not what we ship (table = -1); shows what a node without xt_RTPENGINE does with table 0.
    other = loopback_settings(rtpengineAddress="127.0.0.41")
    with running_rtpengine(other, "--table=0") as daemon:
        assert daemon.ng.ping() == "pong"
        log = daemon.log()
    # Without the module (as here and in CI) rtpengine says so once and relays in userspace.
    if "FAILED TO CREATE KERNEL TABLE 0" in log:
        assert "KERNEL FORWARDING DISABLED" in log
    assert "Startup complete" in log
