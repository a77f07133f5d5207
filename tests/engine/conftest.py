"""Engine tier fixtures: a loopback control plane with kwok nodes (kwokctl) and a Pulumi workspace.

The real Pulumi CLI runs our real program (a copy of the project tree, same .venv) with a
file backend and a passphrase; images are prebuilt references (imageBuild false) because
pulumi-docker's plugin cannot be built from Go modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster_common import Workspace, api_client, api_request
from tests.engine import cluster as local_cluster
from tests.figures import record
from tests.tooling import TOOLS_DIR, missing

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
# the CGRateS StorDB, for the engine stack, the two upgraded stacks, the ephemeral stacks and the dev
# stack; a released volume is not reused); no provisioner runs here, so the volumes are made up
# front.
STORAGE_CLASS = "engine-expandable"


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


def changed(steps: list[dict]) -> dict[str, set[str]]:
    """Logical name -> ops of every step of a preview that is not `same` (the stack excluded)."""
    result: dict[str, set[str]] = {}
    for step in steps:
        urn = step["urn"]
        if step["op"] == "same" or "::pulumi:pulumi:Stack::" in urn:
            continue
        result.setdefault(urn.split("::")[-1], set()).add(step["op"])
    return result


CHARGING_PATHS = (
    ("charging.enabled", "true", "bool"),
    ("charging.destinations[0].name", "national", "string"),
    ("charging.destinations[0].prefixes[0]", "+4930", "string"),
    ("charging.destinations[0].pricePerMinute", "0.1", "float"),
    ("charging.destinations[0].incrementSeconds", "60", "int"),
    ("charging.balances[0].subscriber", "001010000000001", "string"),
    ("charging.balances[0].amount", "5", "float"),
)


def enable_charging(ws) -> None:
    """A tariff and a balance, as a user sets them (charging on deploys CGRateS and its StorDB)."""
    for path, value, kind in CHARGING_PATHS:
        ws.pulumi("config", "set", "--path", path, value, "--type", kind)
    ws.pulumi("config", "set", "--secret", "cgratesStorDbPassword", "engine-stordb-password-01")


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
        context = api_client(cluster.workdir / "pki")
        for path, body in storage(workdir):
            status, text = api_request(cluster.server, context, "POST", path, body)
            assert status in (200, 201), text
        yield cluster
    finally:
        cluster.stop()


def persistent_volume(name: str, path: Path, reclaim: str = "Retain") -> dict:
    """A 10Gi volume of the tier's StorageClass (what a provisioner would have made)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "hostPath": {"path": str(path)},
            "persistentVolumeReclaimPolicy": reclaim,
        },
    }


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
    volumes = [persistent_volume(f"engine-tier-pv-{i}", workdir / f"pv-{i}") for i in range(29)]
    return [("/apis/storage.k8s.io/v1/storageclasses", storage_class)] + [
        ("/api/v1/persistentvolumes", volume) for volume in volumes
    ]


@pytest.fixture(scope="module")
def workspace(engine_cluster, tmp_path_factory) -> Workspace:
    config = engine_stack_config(engine_cluster)
    ws = Workspace.create(tmp_path_factory.mktemp("pulumi"), "engine", engine_cluster, config)
    # No valkeyPassword or mongodbPassword: the stack generates them, as the dev stack does.
    for i, subscriber in enumerate(ENGINE_SUBSCRIBERS[:2]):  # the third is added by a test
        add_subscriber(ws, i, subscriber)
    yield ws
    record("engine: pulumi wall times: " + ", ".join(f"{k} {v:.1f}s" for k, v in ws.timings.items()))


def engine_stack_config(cluster, namespace: str = "ims-engine") -> dict[str, str]:
    """A stack on this tier's cluster: prebuilt image references instead of builds."""
    return {
        "kubeconfig": str(cluster.kubeconfig),
        "namespace": namespace,
        "imageBuild": "false",
        "imagePush": "false",
        "imageRegistry": "registry.example.net/ims-core",
    }
