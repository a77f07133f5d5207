"""A throwaway Kubernetes control plane on loopback for the engine tests.

Runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from the
tool cache that scripts/bootstrap-tools.sh fills (no kubelet, no containers: kwok
fakes Ready nodes and Running pods, which is enough for Deployments to become
available). Everything listens on 127.0.0.1 on non-default ports; state lives in
one work directory; ``stop()`` ends exactly the PIDs this module started.

Library use (e.g. from a pytest session fixture)::

    cluster = start_cluster(tools_bin, workdir)
    try:
        ...  # KUBECONFIG=cluster.kubeconfig
    finally:
        cluster.stop()

CLI: ``python tests/engine/cluster.py up [--workdir D]`` leaves the cluster running and
prints its kubeconfig; ``python tests/engine/cluster.py down [--workdir D]`` stops it.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

DEFAULT_TOOLS_BIN = Path(os.environ.get("IMS_CORE_TOOLS", Path.home() / ".cache" / "ims-core-tools")) / "bin"
DEFAULT_WORKDIR = Path(os.environ.get("TMPDIR", "/tmp")) / "ims-core-engine-cluster"

# Preferred loopback ports: not the defaults, so a developer's own cluster (6443, 2379 ...)
# is untouched. A port already taken (a second cluster, a parallel CI job) is replaced by
# a free one, so several clusters can run side by side.
ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23800
APISERVER_PORT = 26443
KWOK_PORT = 20247

FAKE_NODES = ("kwok-node-0", "kwok-node-1")
STATE_FILE = "cluster.json"


class ClusterError(RuntimeError):
    """The cluster did not come up; the message names the component and its log."""


@dataclass
class Cluster:
    """A running control plane: where its kubeconfig is and which processes are its own."""

    workdir: Path
    kubeconfig: Path
    server: str
    pids: dict[str, int] = field(default_factory=dict)
    binaries: dict[str, str] = field(default_factory=dict)
    started_in: float = 0.0

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the processes this cluster started (and only those), newest first."""
        stop_pids(self.pids, self.binaries, timeout)
        self.pids.clear()
        state = self.workdir / STATE_FILE
        if state.exists():
            state.unlink()


# --- certificates -----------------------------------------------------------------------------


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    public_key,
    signing_key,
    *,
    ca: bool,
    sans: list | None = None,
    usages: list | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def make_pki(pki: Path) -> None:
    """CA, apiserver serving cert, admin client cert (system:masters), service-account keys."""
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ims-core-engine-ca")])
    ca = _cert(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    _write_key(pki / "ca.key", ca_key)
    _write_cert(pki / "ca.crt", ca)

    server_key = ec.generate_private_key(ec.SECP256R1())
    sans = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
    ]
    server = _cert(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        ca_name,
        server_key.public_key(),
        ca_key,
        ca=False,
        sans=sans,
        usages=[x509.oid.ExtendedKeyUsageOID.SERVER_AUTH],
    )
    _write_key(pki / "apiserver.key", server_key)
    _write_cert(pki / "apiserver.crt", server)

    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, "ims-core-admin"),
        ]
    )
    admin = _cert(
        admin_name,
        ca_name,
        admin_key.public_key(),
        ca_key,
        ca=False,
        usages=[x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    _write_key(pki / "admin.key", admin_key)
    _write_cert(pki / "admin.crt", admin)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki / "sa.key", sa_key)
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def write_kubeconfig(path: Path, pki: Path, server: str) -> None:
    """A self-contained kubeconfig (certificates embedded) for the admin user."""

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "ims-core-engine",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": b64("ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": "ims-core-admin",
                "user": {
                    "client-certificate-data": b64("admin.crt"),
                    "client-key-data": b64("admin.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "ims-core-engine",
                "context": {"cluster": "ims-core-engine", "user": "ims-core-admin"},
            }
        ],
        "current-context": "ims-core-engine",
    }
    # JSON is valid YAML, so client-go and the Pulumi provider read it as a kubeconfig.
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


# --- talking to the apiserver -----------------------------------------------------------------


def api_client(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


def api_request(
    server: str,
    context: ssl.SSLContext,
    method: str,
    path: str,
    body: dict | None = None,
    timeout: float = 10.0,
) -> tuple[int, str]:
    """One REST call; returns (status, body text) and never raises on HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


# --- processes ---------------------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def _alive(pid: int, binary: str) -> bool:
    """True while PID is still the process we started (guards against PID reuse)."""
    cmd = _cmdline(pid)
    if not cmd or cmd != binary:
        return False
    try:
        # A zombie (exited, not yet reaped) counts as gone.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_pids(pids: dict[str, int], binaries: dict[str, str], timeout: float = 15.0) -> None:
    """Stop each started PID in reverse start order: SIGTERM, wait, SIGKILL after timeout.

    One at a time, so the apiserver's graceful shutdown still has its etcd (with etcd gone
    first it waits out its whole grace period).
    """
    for _, pid in list(pids.items())[::-1]:
        binary = binaries.get(str(pid), "")
        if not _alive(pid, binary):
            _reap(pid, timeout=1.0)
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid, binary) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid, binary):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Collect an exited child so no zombie is left (a non-child is left to init)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not our child (CLI "down" from another process): init reaps it
        if done:
            return
        # A Go process's threads can outlive the leader briefly: not reapable yet.
        time.sleep(0.02)


class _Launcher:
    def __init__(self, bin_dir: Path, logs: Path) -> None:
        self.bin_dir = bin_dir
        self.logs = logs
        self.pids: dict[str, int] = {}
        self.binaries: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str]) -> None:
        binary = str(self.bin_dir / name.split("#")[0])
        if not os.access(binary, os.X_OK):
            raise ClusterError(f"{binary} missing: run scripts/bootstrap-tools.sh")
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [binary, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.pids[name] = proc.pid
        self.binaries[str(proc.pid)] = binary
        self.procs[name] = proc

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise ClusterError(f"{name} exited with {proc.returncode}; log {self.logs / name}.log:\n{tail}")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports(preferred: list[int]) -> list[int]:
    """The preferred ports where free, otherwise free ephemeral ones (all distinct)."""
    chosen: list[int] = []
    for port in preferred:
        if port in chosen or not _port_free(port):
            port = _free_port(exclude=chosen)
        chosen.append(port)
    return chosen


def _free_port(exclude: list[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return port


def _wait(what: str, launcher: _Launcher, probe, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        launcher.check()
        if probe():
            return
        time.sleep(0.25)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {launcher.logs}")


def fake_node(name: str) -> dict:
    """A Node that kwok manages (by annotation) and keeps Ready with lease heartbeats."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                "kwok.x-k8s.io/node": "fake",
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }


def start_cluster(
    tools_bin: Path = DEFAULT_TOOLS_BIN,
    workdir: Path = DEFAULT_WORKDIR,
    timeout: float = 120.0,
) -> Cluster:
    """Start etcd, the control plane and kwok on loopback; return once a node is Ready."""
    t0 = time.monotonic()
    tools_bin, workdir = Path(tools_bin), Path(workdir)
    etcd_port, peer_port, api_port, kwok_port = _pick_ports(
        [ETCD_CLIENT_PORT, ETCD_PEER_PORT, APISERVER_PORT, KWOK_PORT]
    )
    workdir.mkdir(parents=True, exist_ok=True)
    pki, logs, data = workdir / "pki", workdir / "logs", workdir / "etcd-data"
    logs.mkdir(exist_ok=True)
    make_pki(pki)
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, pki, server)

    launcher = _Launcher(tools_bin, logs)
    cluster = Cluster(
        workdir=workdir,
        kubeconfig=kubeconfig,
        server=server,
        pids=launcher.pids,
        binaries=launcher.binaries,
    )
    try:
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        launcher.start(
            "etcd",
            [
                "--name=engine",
                f"--data-dir={data}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=engine={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # throwaway data: skip fsync, it dominates on slow disks
                "--log-level=warn",
            ],
        )
        _wait("etcd", launcher, lambda: _http_ok(etcd_url + "/health"), timeout)

        launcher.start(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        context = api_client(pki)
        _wait(
            "kube-apiserver /readyz",
            launcher,
            lambda: _api_ok(server, context, "/readyz"),
            timeout,
        )

        common = [
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=1",
        ]
        launcher.start(
            "kube-controller-manager",
            [
                *common,
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
            ],
        )
        launcher.start("kube-scheduler", common)
        launcher.start(
            "kwok",
            [
                f"--kubeconfig={kubeconfig}",
                # Stages written by bootstrap-tools.sh; passing them also keeps ~/.kwok/kwok.yaml out.
                f"--config={tools_bin.parent / 'share' / 'kwok' / 'stages-fast.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.240.0.1",
                f"--server-address=127.0.0.1:{kwok_port}",
                "--node-lease-duration-seconds=40",
            ],
        )
        for name in FAKE_NODES:
            status, text = api_request(server, context, "POST", "/api/v1/nodes", fake_node(name))
            if status not in (201, 409):
                raise ClusterError(f"creating node {name}: HTTP {status}: {text[:500]}")
        _wait("a Ready kwok node", launcher, lambda: _node_ready(server, context), timeout)
        # Pods need the namespace's default ServiceAccount, which the controller manager creates.
        _wait(
            "default ServiceAccount",
            launcher,
            lambda: (
                api_request(
                    server,
                    context,
                    "GET",
                    "/api/v1/namespaces/default/serviceaccounts/default",
                )[0]
                == 200
            ),
            timeout,
        )
    except BaseException:
        cluster.stop()
        raise
    cluster.started_in = time.monotonic() - t0
    _save_state(cluster)
    return cluster


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _api_ok(server: str, context: ssl.SSLContext, path: str) -> bool:
    try:
        return api_request(server, context, "GET", path, timeout=3)[0] == 200
    except (OSError, urllib.error.URLError):
        return False


def _node_ready(server: str, context: ssl.SSLContext) -> bool:
    status, text = api_request(server, context, "GET", "/api/v1/nodes")
    if status != 200:
        return False
    for node in json.loads(text).get("items", []):
        for cond in node.get("status", {}).get("conditions", []):
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                return True
    return False


def _save_state(cluster: Cluster) -> None:
    state = {
        "kubeconfig": str(cluster.kubeconfig),
        "server": cluster.server,
        "pids": cluster.pids,
        "binaries": cluster.binaries,
    }
    (cluster.workdir / STATE_FILE).write_text(json.dumps(state, indent=2))


def load_cluster(workdir: Path = DEFAULT_WORKDIR) -> Cluster:
    """The cluster a previous `up` left running in workdir (to stop it from another process)."""
    state = json.loads((Path(workdir) / STATE_FILE).read_text())
    return Cluster(
        workdir=Path(workdir),
        kubeconfig=Path(state["kubeconfig"]),
        server=state["server"],
        pids={k: int(v) for k, v in state["pids"].items()},
        binaries=state["binaries"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--tools-bin", type=Path, default=DEFAULT_TOOLS_BIN)
    args = parser.parse_args(argv)
    if args.action == "up":
        cluster = start_cluster(args.tools_bin, args.workdir)
        print(f"cluster up in {cluster.started_in:.1f}s; pids {cluster.pids}")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        return 0
    state = args.workdir / STATE_FILE
    if not state.exists():
        print(f"no cluster state in {state}", file=sys.stderr)
        return 1
    load_cluster(args.workdir).stop()
    print("cluster down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
