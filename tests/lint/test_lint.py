"""Lint tier: ruff on the code, hadolint on every Dockerfile, actionlint on the workflows."""

from __future__ import annotations

import subprocess

import pytest

from tests.tooling import ROOT, require_binary

DOCKERFILES = sorted((ROOT / "dockerfiles").rglob("Dockerfile"))
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff():
    result = run(require_binary("ruff", "venv"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_image_has_a_dockerfile():
    names = {str(p.parent.relative_to(ROOT / "dockerfiles")) for p in DOCKERFILES}
    assert {"kamailio", "rtpengine/alpine", "rtpengine/ubuntu"} <= names, names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[str(p.relative_to(ROOT)) for p in DOCKERFILES])
def test_hadolint(dockerfile):
    result = run(require_binary("hadolint", "venv"), "--failure-threshold", "warning", str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_actionlint(workflow):
    result = run(require_binary("actionlint", "go"), str(workflow))
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_a_workflow_to_lint():
    assert WORKFLOWS, "no GitHub workflow under .github/workflows"
