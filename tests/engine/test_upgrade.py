"""Engine tier: stacks deployed by earlier versions whose StatefulSets had volumeClaimTemplates,
upgraded to this version.

There the StatefulSet controller made the claims (`data-<statefulset>-0`) and no Pulumi
resource held them. This version gives each claim a resource of its own under that very name
(components/stateful.py): the upgrade must take over the claims the controller made, with the
volumes they are bound to (the data), replace only the StatefulSets, and a size setting must
then grow the taken-over claim in place. Two versions: the last one with templates for MongoDB
and the CGRateS StorDB (charging on), and the last one with a template for Valkey (and MongoDB).
Each program is taken from git, as a user would have had it; each stack runs in a namespace of
its own on the tier's cluster.
"""

from __future__ import annotations

import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.cluster_common import PROJECT_FILES, Workspace
from tests.engine.conftest import changed, enable_charging, engine_stack_config
from tests.figures import record
from tests.tooling import ROOT, missing


def _valkey_and_mongodb_passwords(ws: Workspace) -> None:
    # That version wanted both passwords set (it generated none).
    ws.pulumi("config", "set", "--secret", "valkeyPassword", "upgrade-valkey-password-01")
    ws.pulumi("config", "set", "--secret", "mongodbPassword", "upgrade-mongodb-password-01")


@dataclass(frozen=True)
class Release:
    commit: str
    statefulsets: tuple[str, ...]  # those whose claim came from a template
    configure: Callable[[Workspace], None]
    grow: tuple[str, str]  # a size setting to grow after the upgrade, and its StatefulSet
    namespace: str


RELEASES = {
    # The last commit of main whose MongoDB and StorDB claims came from volumeClaimTemplates.
    "mongodb-stordb": Release(
        "63547deb7d571bdc0d7f6984209e701c918b22f3", ("mongodb", "cgrates-stordb"), enable_charging,
        ("mongodbStorage", "mongodb"), "ims-upgrade-stordb",
    ),
    # The last commit (the open5gs branch as merged into main) whose Valkey claim came from one.
    "valkey": Release(
        "2f1acfcbf0a23716d2be98b2ee9e982e7a36e079", ("valkey", "mongodb"), _valkey_and_mongodb_passwords,
        ("valkeyStorage", "valkey"), "ims-upgrade-valkey",
    ),
}


def claim_path(ns: str, statefulset: str) -> str:
    return f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data-{statefulset}-0"


def release_program(commit: str, target) -> None:
    """The release's project files, from git."""
    found = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
    if found.returncode != 0:
        missing(f"commit {commit[:12]} (the version to upgrade from)", "a full clone: git fetch --unshallow")
    archive = target.parent / "release.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", commit, *PROJECT_FILES], cwd=ROOT, stdout=out, check=True)
    target.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")


def bound_claim(ws: Workspace, ns: str, statefulset: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, claim = ws.api("GET", claim_path(ns, statefulset))
        if status == 200 and claim.get("status", {}).get("phase") == "Bound":
            return claim
        assert time.monotonic() < deadline, (statefulset, status, claim)
        time.sleep(1)


def ready(ws: Workspace, ns: str, statefulset: str) -> dict:
    status, sts = ws.api("GET", f"/apis/apps/v1/namespaces/{ns}/statefulsets/{statefulset}")
    assert status == 200 and sts["status"].get("readyReplicas") == 1, (statefulset, sts.get("status"))
    return sts


@pytest.fixture(scope="module", params=sorted(RELEASES))
def release_stack(request, engine_cluster, tmp_path_factory):
    """A stack as the release deployed it, the release, and the claims its StatefulSets made:
    {statefulset: claim}."""
    release = RELEASES[request.param]
    base = tmp_path_factory.mktemp("upgrade")
    release_program(release.commit, base / "release")
    ws = Workspace.create(base, "upgrade", engine_cluster, engine_stack_config(engine_cluster, release.namespace), base / "release")
    release.configure(ws)
    try:
        ws.timed(f"{request.param} release up", "up", "--yes", "--skip-preview")
        claims = {}
        for name in release.statefulsets:
            sts = ready(ws, release.namespace, name)
            assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data"]
            claims[name] = bound_claim(ws, release.namespace, name)
        yield ws, release, claims
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
    ws, release, before = release_stack
    steps = upgrade(ws)
    diff = changed(steps)
    for name in release.statefulsets:
        assert diff.get(f"{name}-data") == {"create"}, diff  # created over the existing claim
        assert diff.get(f"{name}-storage-size") == {"create"}, diff
        assert diff.get(f"{name}-statefulset", set()) & {"replace", "create-replacement"}, diff
    deleted = [s["urn"] for s in steps if s["op"] in ("delete", "delete-replaced") and "PersistentVolumeClaim" in s["urn"]]
    assert deleted == [], deleted
    for name, old in before.items():
        claim = bound_claim(ws, release.namespace, name)
        # The same object (not a new claim of the same name) on the same volume: the data is there.
        assert claim["metadata"]["uid"] == old["metadata"]["uid"], name
        assert claim["spec"]["volumeName"] == old["spec"]["volumeName"], name
        sts = ready(ws, release.namespace, name)
        assert "volumeClaimTemplates" not in sts["spec"], name
        volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"data-{name}-0"
    ws.pulumi("preview", "--expect-no-changes")


def test_a_taken_over_claim_grows_in_place(release_stack):
    ws, release, before = release_stack
    if not (ws.project / "components" / "stateful.py").exists():
        upgrade(ws)  # run alone: upgrade first
    key, name = release.grow
    ws.pulumi("config", "set", key, "2Gi")
    diff = changed(ws.preview_steps())
    assert diff == {f"{name}-data": {"update"}, f"{name}-storage-size": {"update"}}, diff
    ws.pulumi("up", "--yes", "--skip-preview")
    claim = bound_claim(ws, release.namespace, name)
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi", claim["spec"]
    assert claim["metadata"]["uid"] == before[name]["metadata"]["uid"]
