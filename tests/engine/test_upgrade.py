"""Engine tier: a stack that the last release with volumeClaimTemplates deployed, upgraded to this
version.

That release's MongoDB and CGRateS StorDB StatefulSets had a volumeClaimTemplate "data", so the
StatefulSet controller made their claims (`data-mongodb-0`, `data-cgrates-stordb-0`) and no
Pulumi resource held them. This version gives each claim a resource of its own under that very
name (components/stateful.py): the upgrade must take over the claims the controller made, with
the volumes they are bound to (the data), replace only the StatefulSets, and a size setting must
then grow the taken-over claim in place. The release's program is taken from git, as a user
would have had it; the stack runs in a namespace of its own on the tier's cluster.
"""

from __future__ import annotations

import subprocess
import tarfile
import time

import pytest

from tests.cluster_common import PROJECT_FILES, Workspace
from tests.engine.conftest import changed, enable_charging, engine_stack_config
from tests.figures import record
from tests.tooling import ROOT, missing

# The last commit of main whose MongoDB and StorDB claims came from volumeClaimTemplates.
TEMPLATE_RELEASE = "63547deb7d571bdc0d7f6984209e701c918b22f3"
NS = "ims-upgrade"
STATEFULSETS = ("mongodb", "cgrates-stordb")


def claim_path(statefulset: str) -> str:
    return f"/api/v1/namespaces/{NS}/persistentvolumeclaims/data-{statefulset}-0"


def release_program(target) -> None:
    """The release's project files, from git."""
    found = subprocess.run(["git", "cat-file", "-e", f"{TEMPLATE_RELEASE}^{{commit}}"], cwd=ROOT, capture_output=True)
    if found.returncode != 0:
        missing(f"commit {TEMPLATE_RELEASE[:12]} (the release to upgrade from)", "a full clone: git fetch --unshallow")
    archive = target.parent / "release.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", TEMPLATE_RELEASE, *PROJECT_FILES], cwd=ROOT, stdout=out, check=True)
    target.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")


def bound_claim(ws: Workspace, statefulset: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, claim = ws.api("GET", claim_path(statefulset))
        if status == 200 and claim.get("status", {}).get("phase") == "Bound":
            return claim
        assert time.monotonic() < deadline, (statefulset, status, claim)
        time.sleep(1)


def ready(ws: Workspace, statefulset: str) -> dict:
    status, sts = ws.api("GET", f"/apis/apps/v1/namespaces/{NS}/statefulsets/{statefulset}")
    assert status == 200 and sts["status"].get("readyReplicas") == 1, (statefulset, sts.get("status"))
    return sts


@pytest.fixture(scope="module")
def release_stack(engine_cluster, tmp_path_factory):
    """The stack as the release deployed it (charging on, so the StorDB exists), and the claims
    its StatefulSets made: {statefulset: claim}."""
    base = tmp_path_factory.mktemp("upgrade")
    release_program(base / "release")
    ws = Workspace.create(base, "upgrade", engine_cluster, engine_stack_config(engine_cluster, NS), base / "release")
    enable_charging(ws)
    try:
        ws.timed("release up", "up", "--yes", "--skip-preview")
        claims = {}
        for name in STATEFULSETS:
            sts = ready(ws, name)
            assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data"]
            claims[name] = bound_claim(ws, name)
        yield ws, claims
    finally:
        ws.pulumi("destroy", "--yes", "--skip-preview", check=False)
        ws.pulumi("stack", "rm", "--yes", check=False)
        record("engine: upgrade wall times: " + ", ".join(f"{k} {v:.1f}s" for k, v in ws.timings.items()))


def upgrade(ws: Workspace) -> list[dict]:
    """This version's program over the release's stack: the preview's steps, then up."""
    ws.use_program(ROOT)
    steps = ws.preview_steps()
    ws.timed("upgrade up", "up", "--yes", "--skip-preview")
    return steps


def test_the_upgrade_takes_over_the_claims_and_their_volumes(release_stack):
    ws, before = release_stack
    steps = upgrade(ws)
    diff = changed(steps)
    for name in STATEFULSETS:
        assert diff.get(f"{name}-data") == {"create"}, diff  # created over the existing claim
        assert diff.get(f"{name}-storage-size") == {"create"}, diff
        assert diff.get(f"{name}-statefulset", set()) & {"replace", "create-replacement"}, diff
    deleted = [s["urn"] for s in steps if s["op"] in ("delete", "delete-replaced") and "PersistentVolumeClaim" in s["urn"]]
    assert deleted == [], deleted
    for name, old in before.items():
        claim = bound_claim(ws, name)
        # The same object (not a new claim of the same name) on the same volume: the data is there.
        assert claim["metadata"]["uid"] == old["metadata"]["uid"], name
        assert claim["spec"]["volumeName"] == old["spec"]["volumeName"], name
        sts = ready(ws, name)
        assert "volumeClaimTemplates" not in sts["spec"], name
        volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"data-{name}-0"
    ws.pulumi("preview", "--expect-no-changes")


def test_a_taken_over_claim_grows_in_place(release_stack):
    ws, before = release_stack
    if not (ws.project / "components" / "stateful.py").exists():
        upgrade(ws)  # run alone: upgrade first
    ws.pulumi("config", "set", "mongodbStorage", "2Gi")
    diff = changed(ws.preview_steps())
    assert diff == {"mongodb-data": {"update"}, "mongodb-storage-size": {"update"}}, diff
    ws.pulumi("up", "--yes", "--skip-preview")
    claim = bound_claim(ws, "mongodb")
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi", claim["spec"]
    assert claim["metadata"]["uid"] == before["mongodb"]["metadata"]["uid"]
