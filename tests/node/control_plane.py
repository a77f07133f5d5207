"""The node tier's control plane pieces: PKI, kubeconfig and PID-exact process handling for
etcd, kube-apiserver, controller-manager and scheduler (tests/node/node.py starts them inside
the node's network namespace). REST calls are the engine tier's (tests/cluster_common.py); the
rest is the node tier's own, since the engine tier's cluster is kwokctl's.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.cluster_common import api_request


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
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ims-core-node-ca")])
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
                "name": "ims-core-node",
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
                "name": "ims-core-node",
                "context": {"cluster": "ims-core-node", "user": "ims-core-admin"},
            }
        ],
        "current-context": "ims-core-node",
    }
    # JSON is valid YAML, so client-go and the Pulumi provider read it as a kubeconfig.
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


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


class Launcher:
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


def pick_ports(preferred: list[int]) -> list[int]:
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


def wait_for(what: str, launcher: Launcher, probe, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        launcher.check()
        if probe():
            return
        time.sleep(0.25)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {launcher.logs}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def api_ok(server: str, context: ssl.SSLContext, path: str) -> bool:
    try:
        return api_request(server, context, "GET", path, timeout=3)[0] == 200
    except (OSError, urllib.error.URLError):
        return False
