"""A one-node Kubernetes cluster with real pods, kept off the host: the node tier's fixture.

Everything runs inside one network namespace, ``imsnode-<pid>``, that has no link to the host:
its interfaces are loopback, ``node0`` that carries the node's addresses and the default route
(a bridge without ports: it discards what it is given; this kernel has no dummy driver), and
the CNI bridge ``cni0`` with the pods' veths. Before any process starts, a guard chain in the namespace's mangle table drops every
forwarded or outgoing packet that is not bound for ``lo`` or ``cni0`` (``guard_drops()`` reads
its counter; a test makes a pod send off-node and checks it). Pods resolve through a cluster
DNS (CoreDNS with the kubernetes plugin) on the node's address, never the host's resolver.

Processes: the control plane (etcd, apiserver, controller-manager, scheduler; from the tool
cache like the engine tier) is started from this process, in the namespace, and stopped by
PID. containerd, kubelet, kube-proxy, kube-router (NetworkPolicy firewall only) and the
cluster DNS run under ``node-init.sh`` as PID 1 of their own PID and mount namespaces: when
it exits, every container and shim dies with it and every mount the node made disappears.
What cannot be kept inside, the kubelet's kernel sysctls and its cgroups under
``/imsnode-<pid>``, is restored and removed by ``Node.stop()``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster_common import api_client, api_request
from tests.netns import NetNamespace
from tests.node import control_plane
from tests.node.images import PAUSE_IMAGE

NODE_NAME = "ims-node"
NODE_IP = "10.250.0.1"
# Addresses on the node for what runs beside the cluster (the Cx/Rx test doubles, SIPp UEs).
HOST_ADDRESSES = ("10.250.0.2", "10.250.0.3", "10.250.0.4", "10.250.0.5")
CLUSTER_CIDR = "10.244.0.0/16"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
BRIDGE = "cni0"
UPLINK = "node0"
GUARD = "IMS-NODE-GUARD"
CGROUP_FS = Path("/sys/fs/cgroup")
# Host-wide sysctls the kubelet sets at start (setupKernelTunables); restored on stop.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
HERE = Path(__file__).resolve().parent


class NodeError(RuntimeError):
    """The node did not come up; the message names the component and its log."""


def nsexec(netns: str, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run argv in the node's network namespace (nsenter keeps /sys and its cgroups mounted)."""
    result = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", *argv], capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} in {netns}: {result.stderr.strip()}")
    return result


def read_sysctls(names: tuple[str, ...]) -> dict[str, str]:
    return {n: (Path("/proc/sys") / n).read_text().strip() for n in names if (Path("/proc/sys") / n).exists()}


def install_network(netns: str) -> None:
    """Interfaces, routes and the guard; all before anything that could send a packet starts.

    The sysctls are the namespace's own (IPv6 off before any link is up: no router solicitation).
    """
    for key, value in (
        ("net.ipv6.conf.default.disable_ipv6", "1"),
        ("net.ipv6.conf.all.disable_ipv6", "1"),
        ("net.ipv4.ip_forward", "1"),
        ("net.bridge.bridge-nf-call-iptables", "1"),
    ):
        nsexec(netns, ["sysctl", "-qw", f"{key}={value}"])
    ip = ["ip", "-n", netns]
    for cmd in (
        ["link", "set", "lo", "up"],
        ["link", "add", UPLINK, "type", "bridge"],
        ["addr", "add", f"{NODE_IP}/32", "dev", UPLINK],
        *(["addr", "add", f"{a}/32", "dev", UPLINK] for a in HOST_ADDRESSES),
        ["link", "set", UPLINK, "up"],
        # Needed so locally sent packets to Service IPs get a route before kube-proxy's DNAT.
        ["route", "add", "default", "dev", UPLINK],
    ):
        subprocess.run(ip + cmd, check=True, capture_output=True)
    iptables = ["iptables", "-w", "-t", "mangle"]
    nsexec(netns, [*iptables, "-N", GUARD])
    nsexec(netns, [*iptables, "-A", GUARD, "-o", "lo", "-j", "RETURN"])
    nsexec(netns, [*iptables, "-A", GUARD, "-o", BRIDGE, "-j", "RETURN"])
    nsexec(netns, [*iptables, "-A", GUARD, "-j", "DROP"])
    # POSTROUTING sees every packet after the last routing decision (kube-proxy's DNAT
    # included), FORWARD every routed one: the guard sits first in both.
    nsexec(netns, [*iptables, "-I", "POSTROUTING", "1", "-j", GUARD])
    nsexec(netns, [*iptables, "-I", "FORWARD", "1", "-j", GUARD])
    for chain in ("FORWARD", "OUTPUT"):
        nsexec(netns, ["ip6tables", "-w", "-t", "mangle", "-I", chain, "1", "!", "-o", "lo", "-j", "DROP"])


def guard_drops(netns: str) -> int:
    """Packets the guard has dropped so far."""
    out = nsexec(netns, ["iptables", "-w", "-t", "mangle", "-L", GUARD, "-nvx"]).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "DROP":
            return int(fields[0])
    raise NodeError(f"guard chain {GUARD} has no DROP rule:\n{out}")


def guard_first(netns: str) -> bool:
    """True while the guard is still the first rule of mangle POSTROUTING and FORWARD."""
    for chain in ("POSTROUTING", "FORWARD"):
        rules = nsexec(netns, ["iptables", "-w", "-t", "mangle", "-S", chain]).stdout.splitlines()
        if len(rules) < 2 or rules[1] != f"-A {chain} -j {GUARD}":
            return False
    return True


def uplink_tx_packets(netns: str) -> int:
    stats = json.loads(
        subprocess.run(
            ["ip", "-n", netns, "-j", "-s", "link", "show", UPLINK], capture_output=True, text=True, check=True
        ).stdout
    )
    return int(stats[0]["stats64"]["tx"]["packets"])


@dataclass
class Node:
    """The running node and control plane: what tests use and what stop() undoes."""

    netns: NetNamespace
    workdir: Path
    cluster: control_plane.Cluster
    cgroup_root: str
    sysctls: dict[str, str]
    init_pid: int = 0
    init_proc: subprocess.Popen | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else f"(no {path})"

    def check_alive(self) -> None:
        started = self.workdir / "logs" / "started"
        text = started.read_text() if started.exists() else ""
        for line in text.splitlines():
            if line.endswith(" exited"):
                name = line.split()[0]
                raise NodeError(f"{name} exited; log {self.workdir / 'logs' / name}.log:\n{self.log_tail(name)}")
        if self.init_proc is not None and self.init_proc.poll() is not None:
            raise NodeError(f"node-init exited with {self.init_proc.returncode}:\n{self.log_tail('node-init')}")

    def stop(self) -> None:
        """Stop the node (PID 1 of its namespace), the control plane, then undo host changes."""
        try:
            self._stop_init()
        finally:
            try:
                self.cluster.stop()
            finally:
                for name, value in self.sysctls.items():
                    if read_sysctls((name,)).get(name) != value:
                        (Path("/proc/sys") / name).write_text(value)
                remove_cgroups(self.cgroup_root)
                self.netns.destroy()
                # The unpacked images (~0.5 GB) and pod volumes; the logs stay for a failed run.
                for d in ("containerd", "kubelet"):
                    shutil.rmtree(self.workdir / d, ignore_errors=True)

    def _stop_init(self) -> None:
        if not self.init_pid:
            return
        try:
            os.kill(self.init_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        assert self.init_proc is not None
        try:
            self.init_proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.init_proc.kill()  # unshare --kill-child takes PID 1 and so the namespace along
            self.init_proc.wait(timeout=30)


def make_cgroups(root: str) -> None:
    """The kubelet's cgroupRoot in every hierarchy (it refuses to start without them); cpuset
    needs its CPUs and memory nodes copied from the parent before tasks can join."""
    for hierarchy in CGROUP_FS.iterdir():
        if not (hierarchy / "cgroup.procs").exists():
            continue
        top = hierarchy / root.lstrip("/")
        top.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (top / name).exists() and not (top / name).read_text().strip():
                (top / name).write_text((hierarchy / name).read_text())


def remove_cgroups(root: str) -> None:
    """rmdir the node's cgroup tree in every hierarchy, deepest first (processes are gone)."""
    for hierarchy in CGROUP_FS.iterdir():
        top = hierarchy / root.lstrip("/")
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*dirs, top]:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # the last tasks are still leaving


def leftovers(node: Node) -> list[str]:
    """What a stopped node left on the host: cgroups, changed sysctls, its namespace, processes."""
    left = [
        str(h / node.cgroup_root.lstrip("/"))
        for h in CGROUP_FS.iterdir()
        if (h / node.cgroup_root.lstrip("/")).exists()
    ]
    now = read_sysctls(tuple(node.sysctls))
    left += [f"sysctl {k}={now.get(k)} (was {v})" for k, v in node.sysctls.items() if now.get(k) != v]
    if (Path("/run/netns") / node.netns.name).exists():
        left.append(f"network namespace {node.netns.name}")
    marker = str(node.workdir).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes():
                    left.append(f"process {proc.name}: {(proc / 'cmdline').read_bytes()[:200]!r}")
            except OSError:
                continue
    return left


# --- configuration files ------------------------------------------------------------------------


def write_configs(workdir: Path, kubeconfig: Path, pki: Path, cgroup_root: str) -> None:
    """containerd, CNI, kubelet, kube-proxy and cluster-DNS configs, all under workdir."""
    for d in ("containerd", "cni", "cni-ipam", "kubelet", "pod-logs", "cluster-dns", "logs"):
        (workdir / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(kubeconfig, workdir / "kubeconfig")
    c = workdir / "containerd"
    (workdir / "containerd.toml").write_text(
        f"""version = 2
root = "{c}/root"
state = "{c}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{c}/containerd.sock"
[ttrpc]
  address = "{c}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{c}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE here: without this every sandbox fails in runc create.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{workdir}/cni"
"""
    )
    (workdir / "cni" / "10-ims-node.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "ims-node",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": BRIDGE,
                        "isGateway": True,
                        # No masquerade: nothing is meant to leave, and the guard drops it anyway.
                        "ipMasq": False,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_CIDR}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(workdir / "cni-ipam"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=2,
        )
    )
    _write_kubelet_config(workdir, pki, cgroup_root)
    _write_kube_proxy_config(workdir)
    _write_cluster_dns(workdir)


def _write_kubelet_config(workdir: Path, pki: Path, cgroup_root: str) -> None:
    (workdir / "resolv.conf").write_text(f"nameserver {NODE_IP}\noptions ndots:5\n")
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this host is cgroup v1 (hybrid)
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "containerRuntimeEndpoint": f"unix://{workdir}/containerd/containerd.sock",
        "address": NODE_IP,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "clusterDNS": [NODE_IP],
        "clusterDomain": "cluster.local",
        "resolvConf": str(workdir / "resolv.conf"),
        "podLogsDir": str(workdir / "pod-logs"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "failSwapOn": False,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "hairpinMode": "hairpin-veth",
        "maxPods": 40,
    }
    (workdir / "kubelet.yaml").write_text(json.dumps(config, indent=2))


def _write_kube_proxy_config(workdir: Path) -> None:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(workdir / "kubeconfig")},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "clusterCIDR": CLUSTER_CIDR,
        "healthzBindAddress": "",
        "metricsBindAddress": "",
        # Zero leaves the host-wide conntrack table size and timeouts alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
    }
    (workdir / "kube-proxy.yaml").write_text(json.dumps(config, indent=2))


def _write_cluster_dns(workdir: Path) -> None:
    """The pods' resolver: cluster.local from the API, every other name refused (never forwarded)."""
    (workdir / "cluster-dns" / "Corefile").write_text(
        f"""cluster.local:53 in-addr.arpa:53 {{
    bind {NODE_IP}
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {workdir / "kubeconfig"}
        pods insecure
    }}
}}
.:53 {{
    bind {NODE_IP}
    template ANY ANY {{
        rcode REFUSED
    }}
}}
"""
    )


# --- start --------------------------------------------------------------------------------------


def start_control_plane(tools_bin: Path, workdir: Path, timeout: float = 120.0) -> control_plane.Cluster:
    """etcd, kube-apiserver, controller-manager and scheduler on the namespace's loopback.

    Call from a thread inside the node's network namespace (children inherit it). No kwok:
    the one node is the real kubelet.
    """
    ec = control_plane
    etcd_port, peer_port, api_port = ec.pick_ports([2379, 2380, 6443])
    pki, logs = workdir / "pki", workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ec.make_pki(pki)
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = workdir / "admin.kubeconfig"
    ec.write_kubeconfig(kubeconfig, pki, server)
    launcher = ec.Launcher(tools_bin, logs)
    cluster = ec.Cluster(
        workdir=workdir, kubeconfig=kubeconfig, server=server, pids=launcher.pids, binaries=launcher.binaries
    )
    try:
        etcd = f"http://127.0.0.1:{etcd_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        launcher.start(
            "etcd",
            [
                "--name=node", f"--data-dir={workdir / 'etcd-data'}", f"--listen-client-urls={etcd}",
                f"--advertise-client-urls={etcd}", f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=node={peer}",
                "--initial-cluster-state=new", "--unsafe-no-fsync", "--log-level=warn",
            ],
        )  # fmt: skip
        ec.wait_for("etcd", launcher, lambda: ec.http_ok(etcd + "/health"), timeout)
        launcher.start(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}", f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}", f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=RBAC",
                "--allow-privileged=true", "--enable-priority-and-fairness=false", "--profiling=false",
                # logs/exec reach the kubelet by the node's InternalIP, with the admin client cert.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--kubelet-client-certificate={pki / 'admin.crt'}", f"--kubelet-client-key={pki / 'admin.key'}",
                "--v=1",
            ],
        )  # fmt: skip
        context = api_client(pki)
        ec.wait_for("kube-apiserver /readyz", launcher, lambda: ec.api_ok(server, context, "/readyz"), timeout)
        common = [f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--secure-port=0", "--v=1"]
        launcher.start(
            "kube-controller-manager",
            [
                *common, f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false", "--controllers=*,-nodeipam",
            ],
        )  # fmt: skip
        launcher.start("kube-scheduler", common)
        ec.wait_for(
            "default ServiceAccount",
            launcher,
            lambda: (
                api_request(server, context, "GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
            ),
            timeout,
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_init(node: Node, tools_bin: Path) -> None:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "NODE_WORKDIR": str(node.workdir),
        "NODE_BIN": str(tools_bin),
        "NODE_NAME": NODE_NAME,
        "NODE_IP": NODE_IP,
        "SERVICE_CIDR": SERVICE_CIDR,
    }
    log = open(node.workdir / "logs" / "node-init.log", "wb")  # noqa: SIM115 - handed to the child
    node.init_proc = subprocess.Popen(
        [
            "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc",
            "--kill-child=SIGKILL", "bash", str(HERE / "node-init.sh"),
        ],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    # PID 1 of the namespace is unshare's only child: signal it, not unshare.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{node.init_proc.pid}/task/{node.init_proc.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        if pids:
            node.init_pid = int(pids[0])
            return
        time.sleep(0.05)
    raise NodeError(f"node-init did not start:\n{node.log_tail('node-init')}")


def start_node(tools_bin: Path, workdir: Path, timeout: float = 180.0) -> Node:
    """Network and guard first, then the control plane, then the node; returns once Ready."""
    t0 = time.monotonic()
    tag = f"imsnode-{os.getpid()}"
    netns = NetNamespace(tag, hosts={}, nameserver=NODE_IP).create()
    node: Node | None = None
    try:
        install_network(tag)
        with netns.entered():
            cluster = start_control_plane(tools_bin, workdir)
        node = Node(netns, workdir, cluster, f"/{tag}", read_sysctls(KUBELET_SYSCTLS))
        node.timings["control plane"] = time.monotonic() - t0
        write_configs(workdir, cluster.kubeconfig, workdir / "pki", node.cgroup_root)
        make_cgroups(node.cgroup_root)
        with netns.entered():
            _start_init(node, tools_bin)
        _wait_ready(node, timeout)
        node.timings["node Ready"] = time.monotonic() - t0
    except BaseException:
        if node is not None:
            node.stop()
        else:
            netns.destroy()
        raise
    return node


def api(
    node: Node, method: str, path: str, body: dict | None = None, content_type: str = "application/json"
) -> tuple[int, dict]:
    context = api_client(node.workdir / "pki")
    with node.netns.entered():
        status, text = api_request(node.cluster.server, context, method, path, body, content_type=content_type)
    return status, (json.loads(text) if text.strip().startswith("{") else {"raw": text})


def _wait_ready(node: Node, timeout: float) -> None:
    """Give the registered node its pod CIDR (no nodeipam controller here), then wait for Ready."""
    deadline = time.monotonic() + timeout
    cidr_set = False
    while time.monotonic() < deadline:
        node.check_alive()
        status, body = api(node, "GET", f"/api/v1/nodes/{NODE_NAME}")
        if status == 200:
            if not cidr_set and not body.get("spec", {}).get("podCIDR"):
                patch = {"spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}}
                s, b = api(node, "PATCH", f"/api/v1/nodes/{NODE_NAME}", patch, "application/strategic-merge-patch+json")
                if s != 200:
                    raise NodeError(f"setting the pod CIDR: HTTP {s}: {b}")
            if not cidr_set:
                (node.workdir / "node-registered").touch()
            cidr_set = True
            conditions = {c["type"]: c["status"] for c in body.get("status", {}).get("conditions", [])}
            if conditions.get("Ready") == "True":
                return
        time.sleep(0.5)
    raise NodeError(f"node {NODE_NAME} not Ready after {timeout:.0f}s; kubelet log:\n{node.log_tail('kubelet')}")


def import_images(node: Node, archive: Path) -> float:
    """ctr images import into the node's containerd (k8s.io namespace); returns seconds taken."""
    t0 = time.monotonic()
    result = subprocess.run(
        ["ctr", "--address", str(node.containerd_socket()), "-n", "k8s.io", "images", "import", str(archive)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        raise NodeError(f"ctr images import {archive}: {result.stderr.strip()}")
    return time.monotonic() - t0
