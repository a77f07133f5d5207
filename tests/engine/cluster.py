"""A throwaway Kubernetes control plane on loopback for the engine tests, made by kwokctl.

`kwokctl --runtime binary` (sigs.k8s.io/kwok, built by scripts/bootstrap-tools.sh) generates the
PKI and runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok
controller as local processes on free loopback ports, from the binaries the bootstrap built
(nothing is downloaded), every one bound to 127.0.0.1 (kwokctl's default is 0.0.0.0: etcd would
take connections from the network, unauthenticated). kwok fakes Ready nodes and Running pods: enough for Deployments and
StatefulSets to become available; no kubelet, no containers. Everything lives in one work
directory (KWOK_WORKDIR), so neither ~/.kwok nor ~/.kube/config is read or written, and two
clusters (two engineers, two CI jobs) run side by side under different names.

Library use (e.g. from a pytest session fixture)::

    cluster = start_cluster(tools_bin, workdir)
    try:
        ...  # KUBECONFIG=cluster.kubeconfig
    finally:
        cluster.stop()

CLI: ``python tests/engine/cluster.py up [--workdir D]`` leaves the cluster running and prints
its kubeconfig; ``python tests/engine/cluster.py down [--workdir D]`` deletes it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.cluster_common import api_client, api_request

DEFAULT_TOOLS_BIN = Path(os.environ.get("IMS_CORE_TOOLS", Path.home() / ".cache" / "ims-core-tools")) / "bin"
DEFAULT_WORKDIR = Path(os.environ.get("TMPDIR", "/tmp")) / "ims-core-engine-cluster"
NODES = 2
# kwokctl flag -> binary in the tool cache.
BINARIES = {
    "--etcd-binary": "etcd",
    "--kube-apiserver-binary": "kube-apiserver",
    "--kube-controller-manager-binary": "kube-controller-manager",
    "--kube-scheduler-binary": "kube-scheduler",
    "--kwok-controller-binary": "kwok",
}


# kwokctl reads this from KWOK_WORKDIR; the options not available as flags live here.
KWOKCTL_CONFIG = """\
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
"""


class ClusterError(RuntimeError):
    """The cluster did not come up; the message has kwokctl's output."""


@dataclass
class Cluster:
    """A running kwokctl cluster: its name, its directory, its kubeconfig and API server."""

    name: str
    kwok_workdir: Path
    tools_bin: Path
    started_in: float = 0.0

    @property
    def workdir(self) -> Path:
        """The cluster's own directory (pki/, logs/, pids/, kubeconfig.yaml)."""
        return self.kwok_workdir / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig.yaml"

    @property
    def server(self) -> str:
        (entry,) = yaml.safe_load(self.kubeconfig.read_text())["clusters"]
        return entry["cluster"]["server"]

    def pids(self) -> dict[str, int]:
        """The processes kwokctl started, by component, from its pid files."""
        found = {}
        for path in sorted((self.workdir / "pids").glob("*.pid")):
            try:
                found[path.stem] = int(path.read_text().strip())
            except (OSError, ValueError):
                continue
        return found

    def stop(self, timeout: float = 30.0) -> None:
        """`kwokctl delete cluster`, then make sure each process it had started is gone."""
        pids = self.pids()
        kwokctl(self, "delete", "cluster", "--name", self.name, check=False, timeout=timeout)
        for pid in pids.values():
            _ensure_stopped(pid)


def _env(cluster: Cluster) -> dict[str, str]:
    return {**os.environ, "KWOK_WORKDIR": str(cluster.kwok_workdir), "PATH": f"{cluster.tools_bin}:{os.environ['PATH']}"}


def kwokctl(cluster: Cluster, *args: str, check: bool = True, timeout: float = 300.0) -> str:
    result = subprocess.run(
        [str(cluster.tools_bin / "kwokctl"), f"--config={cluster.kwok_workdir / 'kwok.yaml'}", *args],
        env=_env(cluster),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise ClusterError(f"kwokctl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _ensure_stopped(pid: int, timeout: float = 10.0) -> None:
    """A process kwokctl started and did not stop: end it (it is ours, by its pid file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- start -------------------------------------------------------------------------------------


def _wait(what: str, probe, timeout: float, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.25)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {cluster.workdir / 'logs'}")


def start_cluster(tools_bin: Path = DEFAULT_TOOLS_BIN, workdir: Path = DEFAULT_WORKDIR, timeout: float = 180.0) -> Cluster:
    """Create the cluster and its nodes; return once a node is Ready and pods can be created."""
    t0 = time.monotonic()
    tools_bin, workdir = Path(tools_bin), Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "kwok.yaml").write_text(KWOKCTL_CONFIG)
    cluster = Cluster(name=f"ims-engine-{os.getpid()}", kwok_workdir=workdir, tools_bin=tools_bin)
    binaries = []
    for flag, name in BINARIES.items():
        path = tools_bin / name
        if not os.access(path, os.X_OK):
            raise ClusterError(f"{path} missing: run scripts/bootstrap-tools.sh")
        binaries.append(f"{flag}={path}")
    try:
        kwokctl(
            cluster,
            "create",
            "cluster",
            "--name",
            cluster.name,
            "--runtime",
            "binary",
            *binaries,
            # Leave ~/.kube/config alone: the tests use the cluster's own kubeconfig.
            "--kubeconfig=",
            "--wait",
            f"{int(timeout)}s",
            "--timeout",
            f"{int(timeout)}s",
            timeout=timeout + 30,
        )
        kwokctl(cluster, "scale", "node", "--replicas", str(NODES), "--name", cluster.name)
        server, context = cluster.server, api_client(cluster.workdir / "pki")
        _wait("a Ready kwok node", lambda: _node_ready(server, context), timeout, cluster)
        # Pods need the namespace's default ServiceAccount, which the controller manager creates.
        _wait(
            "default ServiceAccount",
            lambda: api_request(server, context, "GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            timeout,
            cluster,
        )
    except BaseException:
        cluster.stop()
        raise
    cluster.started_in = time.monotonic() - t0
    return cluster


def _node_ready(server: str, context: ssl.SSLContext) -> bool:
    status, text = api_request(server, context, "GET", "/api/v1/nodes")
    if status != 200:
        return False
    for node in json.loads(text).get("items", []):
        for cond in node.get("status", {}).get("conditions", []):
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                return True
    return False


def load_cluster(workdir: Path = DEFAULT_WORKDIR, tools_bin: Path = DEFAULT_TOOLS_BIN) -> Cluster:
    """The cluster a previous `up` left running in workdir (to stop it from another process)."""
    (name,) = [p.name for p in (Path(workdir) / "clusters").iterdir() if p.is_dir()]
    return Cluster(name=name, kwok_workdir=Path(workdir), tools_bin=Path(tools_bin))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--tools-bin", type=Path, default=DEFAULT_TOOLS_BIN)
    args = parser.parse_args(argv)
    if args.action == "up":
        cluster = start_cluster(args.tools_bin, args.workdir)
        print(f"cluster {cluster.name} up in {cluster.started_in:.1f}s; pids {cluster.pids()}")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        return 0
    if not (args.workdir / "clusters").is_dir():
        print(f"no cluster in {args.workdir}", file=sys.stderr)
        return 1
    load_cluster(args.workdir, args.tools_bin).stop()
    print("cluster down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
