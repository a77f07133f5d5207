"""The data volumes of Valkey, MongoDB and the CGRateS StorDB: a claim of their own each, sized by
a setting that grows the claim in place and refuses to shrink it (components/stateful.py)."""

from __future__ import annotations

import json

import pytest

from components.volume_size import GrowOnlySizeProvider
from tests.unit.conftest import pod_spec, run_program

STORDB_PASSWORD = "unit-stordb-password-01"
CHARGING = {
    "charging": {
        "enabled": True,
        "destinations": [{"name": "national", "prefixes": ["+4930"], "pricePerMinute": 0.10, "incrementSeconds": 60}],
        "balances": [{"subscriber": "001010000000001", "amount": 5}],
    },
    "cgratesStorDbPassword": STORDB_PASSWORD,
}
# StatefulSet name, its size setting, how the error names the claim.
STORES = [
    ("valkey", "valkeyStorage", "Valkey volume claim"),
    ("mongodb", "mongodbStorage", "MongoDB volume claim"),
    ("cgrates-stordb", "cgratesStorDbStorage", "CGRateS StorDB volume claim"),
]


def sized(sizes: dict[str, str]):
    run = run_program({**CHARGING, **sizes})
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def small():
    return sized({key: "2Gi" for _, key, _ in STORES})


@pytest.mark.parametrize(("name", "key", "what"), STORES)
def test_the_data_is_on_a_claim_of_its_own_named_as_the_template_named_it(small, name, key, what):
    statefulset = small.mocks.named(f"{name}-statefulset").inputs
    assert "volumeClaimTemplates" not in statefulset["spec"], "a template cannot change: its size would be ignored"
    assert statefulset["spec"]["replicas"] == 1 and statefulset["metadata"]["name"] == name
    claim = small.mocks.named(f"{name}-data").inputs
    # What the StatefulSet controller named the template's claim for pod 0: an existing stack's
    # claim (and the data on it) is the one this resource takes over.
    assert claim["metadata"]["name"] == f"data-{name}-0"
    assert claim["spec"]["resources"]["requests"] == {"storage": "2Gi"}
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["labels"] == statefulset["spec"]["template"]["metadata"]["labels"]
    # That claim's size is owned by kube-controller-manager, which made it: growing it is a
    # server-side apply conflict unless forced (the engine tier's upgrade test grows one).
    assert claim["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"
    volumes = {v["name"]: v for v in pod_spec(small.mocks.named(f"{name}-statefulset"))["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": f"data-{name}-0"}
    mounts = [m for c in pod_spec(small.mocks.named(f"{name}-statefulset"))["containers"] for m in c["volumeMounts"]]
    assert "data" in {m["name"] for m in mounts}
    guard = small.mocks.named(f"{name}-storage-size").inputs
    assert (guard["key"], guard["size"], guard["what"]) == (key, "2Gi", what)


def test_no_statefulset_of_the_stack_has_a_claim_template(small):
    statefulsets = [r for r in small.resources if r.typ == "kubernetes:apps/v1:StatefulSet"]
    assert {r.name for r in statefulsets} == {f"{name}-statefulset" for name, _, _ in STORES}
    assert all("volumeClaimTemplates" not in r.inputs["spec"] for r in statefulsets)


def _inputs(run) -> dict[str, str]:
    return {r.name: json.dumps(r.inputs, sort_keys=True, default=str) for r in run.resources}


@pytest.mark.parametrize(("name", "key", "what"), STORES)
def test_a_larger_size_changes_only_the_claim_and_its_guard(small, name, key, what):
    """Only the claim's spec changes, which the API server updates in place: the StatefulSet,
    whose templates cannot change, stays as it is, and so does everything else."""
    larger = sized({**{k: "2Gi" for _, k, _ in STORES}, key: "5Gi"})
    before, after = _inputs(small), _inputs(larger)
    assert before.keys() == after.keys()
    assert {n for n in before if before[n] != after[n]} == {f"{name}-data", f"{name}-storage-size"}
    assert larger.mocks.named(f"{name}-data").inputs["spec"]["resources"]["requests"] == {"storage": "5Gi"}


def _props(run, name: str) -> dict:
    inputs = run.mocks.named(f"{name}-storage-size").inputs
    return {k: inputs[k] for k in ("key", "size", "what")}


@pytest.mark.parametrize(("name", "key", "what"), STORES)
def test_a_smaller_size_is_refused_with_the_key_the_sizes_and_what_is_allowed(small, name, key, what):
    """The guard's check as the engine runs it at preview: last deploy's inputs, then this one's."""
    shrunk = sized({**{k: "2Gi" for _, k, _ in STORES}, key: "1536Mi"})
    provider = GrowOnlySizeProvider()
    (failure,) = provider.check(_props(small, name), _props(shrunk, name)).failures
    assert failure.property == "size"
    assert failure.reason == (
        f"{key} = '1536Mi': smaller than the 2Gi the {what} already has; "
        "Kubernetes cannot shrink a volume: keep 2Gi or more"
    )
    grown = sized({**{k: "2Gi" for _, k, _ in STORES}, key: "2048Mi"})
    assert provider.check(_props(small, name), _props(grown, name)).failures == [], "the same size, other units"
    assert provider.check({}, _props(shrunk, name)).failures == [], "a new stack has nothing to compare"
