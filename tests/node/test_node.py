"""Node tier: the real program on a real node. Guard first, then every pod of the stack Ready,
then the NetworkPolicies enforced.

The guard test runs before anything of the stack exists; each test also passes alone (-k).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from components.render import rtpengine as render_rtpengine
from tests.engine.conftest import storage
from tests.figures import record
from tests.live import sipp, test_call
from tests.live.rtpengine_daemon import NamespacedNgClient
from tests.node import kube
from tests.node import node as node_mod
from tests.node.conftest import NAMESPACE
from tests.node.ue import Ues

# The stack's NFs and the Deployment/StatefulSet pod names they start with.
NFS = ("pcscf", "icscf", "scscf", "valkey", "coredns", "rtpengine")
PROBE_NAMESPACE = "ims-node-probe"


@pytest.fixture(scope="module")
def stack(node, workspace, hss, pcrf):
    """`pulumi up` of the real program on the node, then every pod of the stack Ready."""
    # What a cluster's storage offers (the engine tier's default class and volumes): Valkey's
    # claim binds to one; its directory is writable for Valkey's uid.
    for path, body in storage(node.workdir):
        if body["kind"] == "PersistentVolume":
            directory = Path(body["spec"]["hostPath"]["path"])
            directory.mkdir()
            directory.chmod(0o777)
        status, answer = node_mod.api(node, "POST", path, body)
        assert status == 201, answer
    workspace.timed("up", "up", "--yes", "--skip-preview", timeout=900)
    kube.wait_for(
        "every pod of the stack Ready",
        lambda: (ps := kube.pods(node, NAMESPACE)) and all(kube.is_ready(p) for p in ps) and ps,
        300,
        node,
    )
    yield workspace
    workspace.timed("destroy", "destroy", "--yes", timeout=600)


def test_guard_drops_what_a_pod_sends_off_the_node(node):
    """A pod that sends to an address beyond the node: the guard drops it, nothing goes out,
    and the pod's only resolver is the cluster DNS on the node."""
    kube.ensure_namespace(node, PROBE_NAMESPACE)
    before = node_mod.guard_drops(node.netns.name)
    uplink_before = node_mod.uplink_tx_packets(node.netns.name)
    # 192.0.2.1 is TEST-NET-1 (RFC 5737); the namespace has no link off the machine at all.
    phase, log = kube.run_pod(
        node,
        PROBE_NAMESPACE,
        "guard-probe",
        "cat /etc/resolv.conf; for i in 1 2 3; do echo x | socat -u - UDP:192.0.2.1:9; done; sleep 1",
    )
    assert phase == "Succeeded", log
    nameservers = [line.split()[1] for line in log.splitlines() if line.startswith("nameserver")]
    assert nameservers == [node_mod.NODE_IP], f"pod resolvers {nameservers}, want only the cluster DNS"
    assert node_mod.guard_drops(node.netns.name) >= before + 3
    assert node_mod.uplink_tx_packets(node.netns.name) == uplink_before
    assert node_mod.guard_first(node.netns.name)
    links = json.loads(
        subprocess.run(["ip", "-n", node.netns.name, "-j", "link"], capture_output=True, text=True, check=True).stdout
    )
    for link in links:
        name = link["ifname"]
        assert name in ("lo", node_mod.UPLINK, node_mod.BRIDGE) or link.get("master") == node_mod.BRIDGE, (
            f"{name} in the node's namespace is neither loopback, the uplink, the bridge nor a pod's veth"
        )


def test_every_pod_of_the_stack_is_ready(node, stack):
    ready = kube.pods(node, NAMESPACE)
    names = {p["metadata"]["labels"].get("app.kubernetes.io/name") for p in ready}
    assert set(NFS) <= names, f"NFs with a Ready pod: {sorted(names)}"
    figures = []
    for pod in sorted(ready, key=lambda p: p["metadata"]["name"]):
        nf = pod["metadata"]["labels"]["app.kubernetes.io/name"]
        mib = kube.pod_memory_bytes(node, pod) / 2**20
        figures.append(f"{nf} Ready {kube.ready_seconds(pod):.0f}s {mib:.1f}MiB")
    record("node: pod Ready after creation, working set: " + "; ".join(figures))
    assert node_mod.guard_first(node.netns.name), "kube-proxy or kube-router displaced the guard"


def test_valkey_refuses_a_pod_its_policy_does_not_admit(node, stack):
    """The stack's NetworkPolicy admits only the CSCFs to Valkey: a stranger pod in the same
    namespace cannot open a connection to it, while the same pod reaches the IMS DNS (whose
    policy is open to all). The CSCF pods being Ready is the admitted side: the I-CSCF's init
    container wrote its rows to Valkey and both Kamailio roles started on it."""
    status, svc = node_mod.api(node, "GET", f"/api/v1/namespaces/{NAMESPACE}/services")
    assert status == 200
    by_name = {s["metadata"]["labels"].get("app.kubernetes.io/name"): s for s in svc["items"]}

    def connect(nf: str, protocol: str = "TCP") -> str:
        spec = by_name[nf]["spec"]
        port = next(p["port"] for p in spec["ports"] if p.get("protocol", "TCP") == protocol)
        return (
            f"if socat -u /dev/null TCP:{spec['clusterIP']}:{port},connect-timeout=4; "
            f"then echo {nf}=REACHED; else echo {nf}=BLOCKED; fi"
        )

    phase, log = kube.run_pod(node, NAMESPACE, "policy-probe", f"{connect('coredns')}; {connect('valkey')}")
    assert phase == "Succeeded", log
    assert "coredns=REACHED" in log, f"the open IMS DNS was not reachable, so the probe proves nothing:\n{log}"
    assert "valkey=BLOCKED" in log, f"a pod outside Valkey's policy reached it:\n{log}"


# --- a UE beside the cluster: registration, a call with media, the P-CSCF replaced -------------


@pytest.fixture(scope="module")
def ues(node, stack, settings, tmp_path_factory) -> Ues:
    return Ues(
        node.netns.name, tmp_path_factory.mktemp("ues"), service(node, "pcscf")["clusterIP"], settings.ims_domain
    )


@pytest.fixture(scope="module")
def registered(ues, users, hss):
    """alice and bob registered with IMS-AKA through the P-CSCF Service (once per module)."""
    for ue in users.values():
        run = ues.run(ue, sipp.register(ue, ues.domain, expires=3600), f"register-{ue.name}")
        assert run.returncode == 0, run.explain()
    assert {r.command for r in hss.requests} >= {"UAR", "MAR", "SAR"}, [r.command for r in hss.requests]
    return users


def service(node, nf: str) -> dict:
    status, body = node_mod.api(node, "GET", f"/api/v1/namespaces/{NAMESPACE}/services")
    assert status == 200, body
    (svc,) = [s for s in body["items"] if s["metadata"]["labels"].get("app.kubernetes.io/name") == nf]
    return svc["spec"]


def call_with_media(node, ues, users, name: str) -> tuple:
    """alice calls bob (bob echoes alice's RTP); returns the runs and rtpengine's sessions."""
    alice, bob = users["alice"], users["bob"]
    audio = ues.workdir / "pcmu-1s.raw"
    audio.write_bytes(bytes([0xFF]) * 8000)
    callee = ues.run(
        bob, sipp.answer(bob), f"{name}-bob", timeout=30, background=True, extra=("-mi", bob.address, "-rtp_echo")
    )
    caller = ues.run(
        alice,
        sipp.call(alice, bob, ues.domain, hold_ms=1500, rtp_stream=str(audio)),
        f"{name}-alice",
        timeout=30,
        background=True,
        extra=("-mi", alice.address),
    )
    ng = NamespacedNgClient(node_mod.NODE_IP, render_rtpengine.NG_PORT, node.netns, timeout=1.0)
    seen: dict[str, dict] = {}
    while caller.proc.poll() is None:
        for call_id in ng.command("list").get("calls", []):
            answer = ng.command("query", **{"call-id": call_id})
            if answer.get("result") == "ok":
                seen[call_id] = answer
        time.sleep(0.1)
    caller.wait()
    callee.wait()
    if caller.returncode or callee.returncode:
        cscfs = "\n".join(kube.logs(node, NAMESPACE, nf, 60) for nf in ("pcscf", "scscf", "rtpengine"))
        pytest.fail(f"alice: {caller.explain()}\nbob: {callee.explain()}\n{cscfs}")
    return caller, callee, seen


def assert_sdp_through_rtpengine(caller, callee) -> str:
    """Both SDPs point at the rtpengine pod (hostNetwork: the node's address); the Call-ID."""
    (invite,) = callee.received("INVITE ")
    assert test_call.sdp_connection(invite) == node_mod.NODE_IP, invite
    ok = [m for m in caller.received("SIP/2.0 200") if "CSeq: 1 INVITE" in m]
    assert ok and test_call.sdp_connection(ok[0]) == node_mod.NODE_IP, caller.explain()
    (call_id,) = re.findall(r"(?m)^Call-ID: *(\S+)", invite)
    return call_id


def assert_media_anchored(caller, callee, seen, users) -> None:
    """Both SDPs point at the rtpengine pod, and alice's RTP went through it to bob and bob's
    echo came back."""
    call_id = assert_sdp_through_rtpengine(caller, callee)
    mo, mt = seen.get(call_id), seen.get(f"{call_id}-mt")
    assert mo and mt, sorted(seen)
    assert test_call.received_from(mo, users["alice"].address) > 0, mo
    assert test_call.received_from(mt, users["bob"].address) > 0, mt


def test_ue_registers_and_calls_through_the_services(node, ues, registered, users):
    caller, callee, seen = call_with_media(node, ues, users, "call")
    assert_media_anchored(caller, callee, seen, users)


def test_call_after_the_pcscf_pod_is_replaced_needs_no_registration(node, ues, registered, users, pcrf, settings):
    """The P-CSCF keeps its contacts in Valkey: its replacement pod serves the registered UEs.

    Readiness says SIP answers, not that the Rx peer is up: until the new pod's Diameter
    connection to the PCRF is open, a call gets 488 (no QoS). The test waits for that
    connection, as a user would see it come back, and prints how long it took."""
    (old,) = kube.pods(node, NAMESPACE, "app.kubernetes.io/name=pcscf")
    status, body = node_mod.api(node, "DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{old['metadata']['name']}")
    assert status == 200, body
    new = kube.wait_for(
        "a new Ready P-CSCF pod",
        lambda: [
            p for p in kube.pods(node, NAMESPACE, "app.kubernetes.io/name=pcscf")
            if p["metadata"]["uid"] != old["metadata"]["uid"] and kube.is_ready(p)
        ],
        180,
        node,
    )  # fmt: skip
    record(f"node: replacement P-CSCF pod Ready {kube.ready_seconds(new[0]):.0f}s after creation")
    ready = time.monotonic()
    peer = (settings.nf("pcscf").fqdn, new[0]["status"]["podIP"])
    kube.wait_for("the new P-CSCF's Rx connection", lambda: peer in pcrf.peer_addresses, 90, node)
    record(f"node: replacement P-CSCF's Rx peer up {time.monotonic() - ready:.1f}s after the pod was Ready")
    caller, callee, seen = call_with_media(node, ues, users, "call-after-pcscf-replaced")
    # Media too: the replacement's first NG commands once carried the old pod's cookies and got
    # the old pod's cached replies (a leg without a session, or rtpengine disabled and a 503);
    # the Kamailio entrypoint's random server_id is what keeps this green.
    assert_media_anchored(caller, callee, seen, users)
    assert not [m for m in caller.received("SIP/2.0 4") if "CSeq: 1 INVITE" in m], caller.explain()


def test_a_pcscf_setting_rolls_only_the_pcscf(node, stack, workspace):
    """pcscfRx changes only the P-CSCF's rendered config: its pod is replaced, every other
    pod keeps running (same pod UID)."""
    before = {
        p["metadata"]["uid"]: p["metadata"]["labels"]["app.kubernetes.io/name"] for p in kube.pods(node, NAMESPACE)
    }
    workspace.pulumi("config", "set", "pcscfRx", "false")
    try:
        workspace.timed("up (pcscfRx false)", "up", "--yes", "--skip-preview", timeout=900)
        after = kube.wait_for(
            "the stack Ready again",
            lambda: (ps := kube.pods(node, NAMESPACE)) and all(kube.is_ready(p) for p in ps) and ps,
            300,
            node,
        )
    finally:
        workspace.pulumi("config", "set", "pcscfRx", "true")
    now = {p["metadata"]["uid"]: p["metadata"]["labels"]["app.kubernetes.io/name"] for p in after}
    replaced = sorted({nf for uid, nf in before.items() if uid not in now})
    kept = sorted({nf for uid, nf in now.items() if uid in before})
    assert replaced == ["pcscf"], f"replaced {replaced}, kept {kept}"
    assert set(kept) == set(NFS) - {"pcscf"}, kept
