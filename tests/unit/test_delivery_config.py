"""Delivery tooling without a CLI: the config an ephemeral stack gets, what the tool refuses,
and the preview comment. The engine tier runs both tools against a real backend and cluster."""

from __future__ import annotations

import argparse

import pytest
import yaml

from delivery import ephemeral, preview
from tests.tooling import ROOT
from tests.unit.conftest import run_program
from tests.unit.test_policy import violations


def args(*sets: str) -> argparse.Namespace:
    return argparse.Namespace(set=list(sets), kubeconfig="", kube_context="")


def plain(config: dict) -> dict:
    return {key: value.value for key, value in config.items()}


def test_two_pull_requests_get_their_own_namespace_and_ports():
    a = plain(ephemeral.stack_config(7, 7, args()))
    b = plain(ephemeral.stack_config(8, 8, args()))
    assert (a["namespace"], b["namespace"]) == ("ims-pr-7", "ims-pr-8")
    assert (a["rtpenginePortMin"], a["rtpenginePortMax"]) == ("41140", "41159")
    assert int(a["rtpenginePortMax"]) < int(b["rtpenginePortMin"])
    assert a["rtpengineMediaExposure"] == b["rtpengineMediaExposure"] == "hostPort"
    # Each stack generates its own Valkey password; the tool sets none, and no secret at all.
    assert "valkeyPassword" not in a and not any(v.secret for v in ephemeral.stack_config(7, 7, args()).values())


def test_the_ephemeral_config_is_a_valid_stack():
    config = plain(ephemeral.stack_config(7, 7, args("imageBuild=false", "imagePush=false")))
    run = run_program(config, stack="pr-7")
    assert run.error is None, run.error
    namespaces = [r for r in run.resources if r.typ == "kubernetes:core/v1:Namespace"]
    assert [n.inputs["metadata"]["name"] for n in namespaces] == ["ims-pr-7"]
    assert violations([(r.typ, r.name, r.inputs) for r in run.resources]) == {}


def test_every_slot_fits_the_settings_and_avoids_the_long_lived_range():
    low, _ = ephemeral.slot_ports(0)
    _, high = ephemeral.slot_ports(ephemeral.SLOT_COUNT - 1)
    assert low > 40999 and high <= 65535


@pytest.mark.parametrize(
    "pair, message",
    [
        ("namespace=ims", "--set namespace: set per stack by the tool or the stack itself"),
        ("rtpenginePortMin=40000", "--set rtpenginePortMin: set per stack by the tool or the stack itself"),
        ("pcscfGmExposure=hostNetwork", "--set pcscfGmExposure: set per stack"),
        ("pcscfAddress=10.96.0.10", "--set pcscfAddress = '10.96.0.10': a fixed Service address would collide"),
        ("imageTag", "--set 'imageTag': must be key=value"),
    ],
)
def test_overrides_that_would_make_stacks_collide_are_refused(pair, message):
    with pytest.raises(ephemeral.EphemeralError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        ephemeral.stack_config(7, 7, args(pair))


def test_the_template_sets_no_key_the_tool_owns():
    template = yaml.safe_load(ephemeral.TEMPLATE.read_text())["config"]
    assert not set(template) & (ephemeral.RESERVED | ephemeral.FIXED_ADDRESSES)


def test_the_staging_example_is_a_valid_stack():
    raw = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())["config"]
    config = {k.split(":", 1)[1]: str(v) for k, v in raw.items()}
    run = run_program(config, stack="staging")
    assert run.error is None, run.error
    assert violations([(r.typ, r.name, r.inputs) for r in run.resources]) == {}


def test_comment_carries_marker_verdict_violations_and_the_diff():
    output = (
        "Previewing update (staging):\n    ~ kubernetes:apps/v1:Deployment: (update)\n"
        "Policies:\n    ❌ ims-core@v0.1.0\n        - [mandatory]  ims-pinned-images  (kubernetes:apps/v1:Deployment: tool)\n"
    )
    body = preview.comment(preview.Preview(stack="staging", returncode=255, output=output), "Commit abc")
    assert body.startswith("<!-- ims-core-preview:staging -->\n### ❌ `pulumi preview --diff` of stack `staging`")
    assert "preview failed: 1 policy violation(s)" in body and "Commit abc" in body
    assert "- `- [mandatory]  ims-pinned-images  (kubernetes:apps/v1:Deployment: tool)`" in body
    assert "```diff\n" + output.strip() + "\n```" in body


def test_comment_of_a_huge_diff_stays_under_githubs_limit():
    body = preview.comment(preview.Preview(stack="s", returncode=0, output="+ x\n" * 40000))
    assert len(body) < 65536 and "more characters in the job log" in body
