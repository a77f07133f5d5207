"""Node tier fixtures: a real one-node cluster (tests/node/node.py), the test images imported
into its containerd, and the real Pulumi program brought up on it.

Module-scoped: each test file gets its own node, so every file passes when run alone.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.render import kamailio as render_kamailio
from components.settings import Settings
from tests.cluster_common import Workspace
from tests.doubles.cx_hss import CxHssTestDouble, Subscriber
from tests.doubles.rx_pcrf import RxPcrfTestDouble
from tests.figures import record
from tests.live import sipp
from tests.netns import can_create_namespaces
from tests.node import images as node_images
from tests.node import node as node_mod
from tests.profiles import TEST_VALKEY_PASSWORD, stack_settings
from tests.tooling import TOOLS_DIR, missing

NODE_TOOLS = (
    "pulumi", "pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-kubernetes",
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
    "kube-router", "coredns",
)  # fmt: skip
HOST_BINARIES = ("containerd", "runc", "ctr", "iptables", "ipset", "nsenter", "unshare", "go")
NAMESPACE = "ims-node"
HSS_ADDRESS, PCRF_ADDRESS, ALICE_ADDRESS, BOB_ADDRESS = node_mod.HOST_ADDRESSES
# The stack as the node tier deploys it: the test images, the Cx/Rx doubles beside the node
# (their addresses on it) instead of open5gs (no open5gs image here), and IPsec off (SIPp
# speaks no IPsec; the kernel has no ESP).
STACK_CONFIG = {
    "namespace": NAMESPACE,
    "hssAddress": HSS_ADDRESS,
    "pcrfAddress": PCRF_ADDRESS,
    "pcscfIpsec": "false",
    "open5gs": "false",
    **node_images.stack_config(),
}


def _require_tools() -> str:
    why = can_create_namespaces()
    if why:
        missing(f"the node tier ({why})", "run as root on Linux")
    absent = [t for t in NODE_TOOLS if not (TOOLS_DIR / "bin" / t).exists()]
    if absent:
        missing(f"node tools {', '.join(absent)} (in {TOOLS_DIR / 'bin'})", "go")
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    absent = [b for b in HOST_BINARIES if b != "go" and shutil.which(b) is None] + ([] if go else ["go"])
    if absent:
        missing(f"{', '.join(absent)} (containerd, runc, CNI plugins, ipset)", "debian")
    if not (node_images.DEBIAN_ROOT / "usr" / "sbin" / "kamailio").exists():
        missing("the Debian 13 root the test images are made of", "run: bash scripts/debian13-root.sh")
    assert go is not None
    return go


@dataclass
class NodeWorkspace(Workspace):
    """The engine tier's Pulumi workspace, with every CLI run inside the node's network."""

    node: node_mod.Node | None = None

    def pulumi(self, *args, **kwargs):
        with self.node.netns.entered():
            return super().pulumi(*args, **kwargs)


# The kubelet changes host-wide sysctls (KUBELET_SYSCTLS) and the node restores them when it
# stops: two node tiers on one host (two checkouts) would restore each other's values mid-run.
# The second waits for the first.
NODE_LOCK = Path("/tmp/ims-node.lock")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    go = _require_tools()
    with open(NODE_LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another node tier holds {NODE_LOCK}: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _running_node(go, tmp_path_factory)


def _running_node(go, tmp_path_factory):
    t0 = time.monotonic()
    archive = node_images.archive(go, TOOLS_DIR / "bin" / "coredns")
    images_built = time.monotonic() - t0
    running = node_mod.start_node(TOOLS_DIR / "bin", tmp_path_factory.mktemp("node"))
    try:
        imported = node_mod.import_images(running, archive)
        record(
            f"node: images ready in {images_built:.1f}s, imported in {imported:.1f}s; "
            + ", ".join(f"{k} {v:.1f}s" for k, v in running.timings.items())
        )
        yield running
    finally:
        running.stop()
    left = node_mod.leftovers(running)
    assert not left, f"the node left this behind on the host: {left}"


@pytest.fixture(scope="module")
def workspace(node, tmp_path_factory) -> NodeWorkspace:
    config = {"kubeconfig": str(node.kubeconfig), **STACK_CONFIG}
    ws = NodeWorkspace.create(tmp_path_factory.mktemp("pulumi"), "node", node.cluster, config, node=node)
    ws.pulumi("config", "set", "--secret", "valkeyPassword", TEST_VALKEY_PASSWORD)
    yield ws
    record("node: pulumi wall times: " + ", ".join(f"{k} {v:.1f}s" for k, v in ws.timings.items()))


@pytest.fixture(scope="module")
def settings() -> Settings:
    """The settings the program derives from STACK_CONFIG (FQDNs and realms of the peers)."""
    return stack_settings(stack="node", **{k: v for k, v in STACK_CONFIG.items() if not k.startswith("image")})


@pytest.fixture(scope="module")
def users(settings) -> dict[str, sipp.Ue]:
    domain = settings.ims_domain
    return {
        name: sipp.Ue(name=name, impi=f"{name}@{domain}", k=k, op="ims-core-test-op", amf="00", address=address)
        for name, k, address in (("alice", "alice-secret-k01", ALICE_ADDRESS), ("bob", "bob-secret-key02", BOB_ADDRESS))
    }


@pytest.fixture(scope="module")
def hss(node, settings, users) -> CxHssTestDouble:
    """The Cx HSS double where the stack's hssAddress points: on the node, beside the cluster."""
    nf = settings.nf("hss")
    subscribers = [
        Subscriber(impi=u.impi, k=u.k.encode(), op=u.op.encode(), amf=u.amf.encode(), impus=[u.impu])
        for u in users.values()
    ]
    double = CxHssTestDouble(
        subscribers,
        origin_host=nf.fqdn,
        origin_realm=nf.realm,
        bind_address=HSS_ADDRESS,
        port=render_kamailio.DIAMETER_PORT,
        mandatory_capabilities=[0],
    )
    with node.netns.entered():
        double.start()
    yield double
    double.stop()
    assert not double.errors, double.errors


@pytest.fixture(scope="module")
def pcrf(node, settings) -> RxPcrfTestDouble:
    nf = settings.nf("pcrf")
    double = RxPcrfTestDouble(
        origin_host=nf.fqdn, origin_realm=nf.realm, bind_address=PCRF_ADDRESS, port=render_kamailio.DIAMETER_PORT
    )
    with node.netns.entered():
        double.start()
    yield double
    double.stop()
    assert not double.errors, double.errors
