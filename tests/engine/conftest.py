"""Engine tier fixtures: a loopback control plane with kwok nodes (kwokctl) and a Pulumi workspace.

The real Pulumi CLI runs our real program (a copy of the project tree, same .venv) with a
file backend and a passphrase; images are prebuilt references (imageBuild false) because
pulumi-docker's plugin cannot be built from Go modules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.engine import cluster as local_cluster
from tests.figures import record
from tests.tooling import ROOT, TOOLS_DIR, missing

ENGINE_TOOLS = (
    "pulumi",
    "pulumi-language-python",
    "pulumi-language-python-exec",
    "pulumi-resource-kubernetes",
    "pulumi-resource-pulumi-python",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kwokctl",
)
# What a real cluster's storage offers: a default StorageClass whose claims may grow, and one
# volume of it for each claim the session's stacks make (Valkey, MongoDB and, with charging on,
# the CGRateS StorDB, for the engine stack, the ephemeral stacks and the dev stack; a released
# volume is not reused); no provisioner runs here, so the volumes are made up front.
STORAGE_CLASS = "engine-expandable"
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "components", "config", "dockerfiles")
PASSPHRASE = "engine-tier-passphrase"


@dataclass
class Workspace:
    """One project copy + stack, and the pulumi CLI bound to it."""

    project: Path
    stack: str
    env: dict[str, str]
    cluster: local_cluster.Cluster
    timings: dict[str, float] = field(default_factory=dict)

    def pulumi(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["pulumi", *args, "--stack", self.stack, "--non-interactive"],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"pulumi {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def timed(self, label: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        result = self.pulumi(*args, **kwargs)
        self.timings[label] = time.perf_counter() - start
        return result

    def preview_steps(self) -> list[dict]:
        result = self.pulumi("preview", "--json", "--diff")
        return json.loads(result.stdout).get("steps", [])

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        context = local_cluster.api_client(self.cluster.workdir / "pki")
        status, text = local_cluster.api_request(self.cluster.server, context, method, path, body)
        return status, (json.loads(text) if text.strip().startswith("{") else {"raw": text})


def _tools_present() -> None:
    absent = [t for t in ENGINE_TOOLS if not (TOOLS_DIR / "bin" / t).exists()]
    if absent:
        missing(f"engine tools {', '.join(absent)} (in {TOOLS_DIR / 'bin'})", "go")


# Subscribers as a user declares them: K and OPc with --secret (TS 35.208 test set keys).
ENGINE_SUBSCRIBERS = [
    {"imsi": f"00101000000000{n}", "msisdn": f"555000{n}", "k": "465b5ce8b199b49faa5f0a2ee238a6bc",
     "opc": "cd63cb71954a9f4e48a5994e37a02baf"}
    for n in (1, 2, 3)
]


def add_subscriber(ws, index: int, subscriber: dict) -> None:
    for key, value in subscriber.items():
        secret = ["--secret"] if key in ("k", "opc") else []
        ws.pulumi("config", "set", *secret, "--path", f"subscribers[{index}].{key}", value)


@pytest.fixture(scope="session")
def engine_cluster(tmp_path_factory):
    _tools_present()
    workdir = tmp_path_factory.mktemp("cluster")
    cluster = local_cluster.start_cluster(TOOLS_DIR / "bin", workdir)
    try:
        record(f"engine: local control plane (kwokctl --runtime binary) ready in {cluster.started_in:.1f}s")
        context = local_cluster.api_client(cluster.workdir / "pki")
        for path, body in storage(workdir):
            status, text = local_cluster.api_request(cluster.server, context, "POST", path, body)
            assert status in (200, 201), text
        yield cluster
    finally:
        cluster.stop()


def storage(workdir: Path) -> list[tuple[str, dict]]:
    storage_class = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "allowVolumeExpansion": True,
        "volumeBindingMode": "Immediate",
    }
    volumes = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"engine-tier-pv-{i}"},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(workdir / f"pv-{i}")},
                "persistentVolumeReclaimPolicy": "Retain",
            },
        }
        for i in range(24)
    ]
    return [("/apis/storage.k8s.io/v1/storageclasses", storage_class)] + [
        ("/api/v1/persistentvolumes", volume) for volume in volumes
    ]


@pytest.fixture(scope="module")
def workspace(engine_cluster, tmp_path_factory) -> Workspace:
    base = tmp_path_factory.mktemp("pulumi")
    project = base / "ims-core"
    project.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, project / name)
    (project / ".venv").symlink_to(ROOT / ".venv")
    state = base / "state"
    state.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "KUBECONFIG"))},
        "PATH": f"{TOOLS_DIR / 'bin'}:{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(base / "home"),
        # The language host built from Go modules is older than Pulumi.yaml's runtime options
        # and ignores `virtualenv`: name the project's interpreter explicitly.
        "PULUMI_PYTHON_CMD": str(ROOT / ".venv" / "bin" / "python"),
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_CONFIRMATIONS": "true",
    }
    ws = Workspace(project=project, stack="engine", env=env, cluster=engine_cluster)
    subprocess.run(
        ["pulumi", "stack", "init", ws.stack, "--non-interactive"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    config = {
        "kubeconfig": str(engine_cluster.kubeconfig),
        "namespace": "ims-engine",
        "imageBuild": "false",
        "imagePush": "false",
        "imageRegistry": "registry.example.net/ims-core",
    }
    for key, value in config.items():
        ws.pulumi("config", "set", key, value)
    # No valkeyPassword or mongodbPassword: the stack generates them, as the dev stack does.
    for i, subscriber in enumerate(ENGINE_SUBSCRIBERS[:2]):  # the third is added by a test
        add_subscriber(ws, i, subscriber)
    yield ws
    record("engine: pulumi wall times: " + ", ".join(f"{k} {v:.1f}s" for k, v in ws.timings.items()))
