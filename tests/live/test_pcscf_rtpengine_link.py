"""The P-CSCF's control link to rtpengine (NG) across restarts: what a pod replacement or a
start before rtpengine does to calls.

A restarted P-CSCF talks to rtpengine as a new client, not as the pod it replaces.

Kamailio's rtpengine module tags every NG command with a cookie made of server_id, the process
id and a per-process counter from 0. rtpengine keeps the replies of recent cookies and answers a
cookie it has seen with the earlier reply, whatever the new command is. A pod that replaces
another (or a restarted container) runs the same processes with the same ids, so with a fixed
server_id its first commands carry the old pod's cookies: on the node tier a ping got an offer's
reply ("proxy responded with invalid response"), the relay was disabled and calls got 503. The
image's entrypoint (dockerfiles/kamailio/kamailio-start) gives Kamailio a random server_id per
start; these tests run it as the pod does, in a PID namespace of its own.
"""

from __future__ import annotations

import re
import subprocess
import time

from components.render import rtpengine as render_rtpengine
from tests.live import sipp
from tests.live.rtpengine_daemon import NamespacedNgClient

DUPLICATE = "as a duplicate"
# " 9(9) INFO: rtpengine [rtpengine.c:...]: rtpp_test(): rtpengine instance <udp:...> found, ..."
PINGED = re.compile(r"^\s*\d+\((\d+)\) INFO: rtpengine .*rtpengine instance <[^>]+> found", re.M)


def test_rtpengine_answers_a_repeated_cookie_with_the_earlier_reply(netns, rtpengine):
    """Why the server_id must differ: the same cookie from another address gets the old reply."""
    cookie = b"0_9_%d" % time.monotonic_ns()
    ng = NamespacedNgClient(rtpengine.address, render_rtpengine.NG_PORT, netns)
    first = ng.command("query", cookie=cookie, **{"call-id": "no-such-call"})
    again = ng.command("ping", cookie=cookie)
    fresh = ng.command("ping", cookie=cookie + b"1")
    assert first["result"] == "error"
    assert again == first, (
        "rtpengine no longer answers a repeated cookie from its cache: the entrypoint's reason is gone"
    )
    assert fresh == {"result": "pong"}


def test_a_pcscf_restarted_with_the_same_process_ids_sends_fresh_ng_cookies(core):
    """Two starts of the P-CSCF with identical process ids: rtpengine sees no repeated cookie,
    and the restarted P-CSCF finds rtpengine enabled."""
    core.kamailio["pcscf"].stop()
    duplicates_before = core.rtpengine.log().count(DUPLICATE)
    pingers = []
    try:
        for _ in range(2):
            daemon = core.start_cscf("pcscf", pid_namespace=True)
            deadline = time.monotonic() + 10
            # Each process pings rtpengine once at start; wait for all of them.
            while time.monotonic() < deadline and len(PINGED.findall(daemon.log.read_text(errors="replace"))) < 2:
                time.sleep(0.2)
            time.sleep(0.5)
            log = daemon.log.read_text(errors="replace")
            pingers.append(sorted(PINGED.findall(log)))
            assert "invalid response" not in log, daemon.tail()
            daemon.stop()
    finally:
        core.start_cscf("pcscf")
    # The premise: the second start's processes had the first start's ids (and so, with a fixed
    # server_id, the same cookies).
    assert pingers[0] and pingers[0] == pingers[1], pingers
    assert core.rtpengine.log().count(DUPLICATE) == duplicates_before, core.rtpengine.log()[-2000:]


def test_a_pcscf_that_lost_its_start_up_ping_serves_calls_once_rtpengine_answers(core):
    """rtpengine unreachable while the P-CSCF starts: the start-up ping is lost and the relay is
    disabled. The P-CSCF runs no ping timer, so the first call 5 s after the loss pings the relay
    again and goes through, not after the module's default minute of 503s (a timer's pong is the
    only way back while a timer runs). (The pod also waits for rtpengine before Kamailio starts:
    components/cscf.py, wait-for-rtpengine.)"""
    drop = ["-p", "udp", "-d", core.rtpengine.address, "--dport", str(render_rtpengine.NG_PORT), "-j", "DROP"]
    core.kamailio["pcscf"].stop()
    subprocess.run(core.ns.prefix() + ["iptables", "-w", "-I", "OUTPUT", *drop], check=True)
    try:
        daemon = core.start_cscf("pcscf")
        deadline = time.monotonic() + 30
        while "proxy did not respond to ping" not in daemon.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, daemon.tail()
            time.sleep(0.2)
    finally:
        subprocess.run(core.ns.prefix() + ["iptables", "-w", "-D", "OUTPUT", *drop], check=True)
    alice, bob = core.users.alice, core.users.bob
    for ue in (alice, bob):
        run = core.sipp(ue, sipp.register(ue, core.settings.ims_domain), f"register-{ue.name}-rtpengine-late")
        assert run.returncode == 0, run.explain()
    answering = time.monotonic()
    # Calls until one goes through, each refused one with a 503 from the P-CSCF's media relay.
    while True:
        callee = core.sipp(bob, sipp.answer(bob), "answer-bob-rtpengine-late", timeout=15, background=True)
        caller = core.sipp(alice, sipp.call(alice, bob, core.settings.ims_domain), "call-rtpengine-late", timeout=15)
        if caller.returncode == 0:
            break
        callee.proc.kill()
        callee.wait()
        assert [m for m in caller.received("SIP/2.0 503") if "Media relay" in m], caller.explain()
        assert time.monotonic() < answering + 25, "calls still refused 25 s after rtpengine answers again"
        time.sleep(1)
    callee.wait()
    assert callee.returncode == 0, callee.explain()
    print(f"rtpengine answering again -> a call through: {time.monotonic() - answering:.1f}s")
