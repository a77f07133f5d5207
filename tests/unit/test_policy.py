"""Policy pack rules (policy/rules.py) on the stack the program builds, and on bad inputs.

The shipped stack (dev config, the ephemeral template config, builds off and on) must pass every
rule; each rule must fire on a bad input made from that same stack by one change. The engine
tier runs the same pack through the real CLI (tests/engine/test_delivery.py).
"""

from __future__ import annotations

import copy
import sys

import pytest

from tests.tooling import ROOT
from tests.unit.conftest import run_program

sys.path.insert(0, str(ROOT / "policy"))
import rules  # noqa: E402

BUILDS_OFF = {"imageBuild": False, "imagePush": False, "imageRegistry": "registry.example.net/ims-core"}
EPHEMERAL = {
    **BUILDS_OFF,
    "namespace": "ims-pr-7",
    "rtpengineMediaExposure": "hostPort",
    "rtpenginePortMin": 41000,
    "rtpenginePortMax": 41019,
}
# The P-CSCF with IPsec: NET_ADMIN (allow-listed) on the node's network.
IPSEC = {**BUILDS_OFF, "pcscfIpsec": True, "pcscfGmExposure": "hostNetwork"}


def stack_resources(config: dict) -> list[tuple[str, str, dict]]:
    run = run_program(config)
    assert run.error is None, run.error
    return [(r.typ, r.name, copy.deepcopy(r.inputs)) for r in run.resources]


def violations(resources) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, check in rules.RESOURCE_RULES.items():
        for rtype, logical, props in resources:
            found.setdefault(name, []).extend(check(rtype, props, logical))
    for name, check in rules.STACK_RULES.items():
        found.setdefault(name, []).extend(check(resources))
    return {k: v for k, v in found.items() if v}


def find(resources, logical: str) -> dict:
    return next(props for _, name, props in resources if name == logical)


@pytest.fixture(scope="module")
def shipped():
    return stack_resources(BUILDS_OFF)


@pytest.mark.parametrize(
    "config",
    [BUILDS_OFF, {}, EPHEMERAL, IPSEC, {**BUILDS_OFF, "rtpengineVariant": "ubuntu"}],
    ids=["builds-off", "builds-on", "ephemeral-template", "ipsec-on-host-network", "ubuntu-media"],
)
def test_the_shipped_stack_has_no_violation(config):
    assert violations(stack_resources(config)) == {}


def bad(shipped, logical: str, change) -> dict[str, list[str]]:
    resources = copy.deepcopy(shipped)
    change(find(resources, logical))
    return violations(resources)


def kamailio(props: dict) -> dict:
    return props["spec"]["template"]["spec"]["containers"][0]


def test_resources_rule_fires_on_a_container_without_requests_or_limits(shipped):
    found = bad(shipped, "pcscf-deployment", lambda p: kamailio(p).pop("resources"))
    assert found == {
        "ims-container-resources": [
            "Deployment pcscf, container kamailio: no requests.cpu, requests.memory, limits.memory"
        ]
    }
    found = bad(
        shipped,
        "valkey-statefulset",
        lambda p: p["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].clear(),
    )
    assert list(found) == ["ims-container-resources"] and "limits.memory" in found["ims-container-resources"][0]


def test_privilege_rule_fires_on_privileged_and_on_capabilities_outside_the_allow_list(shipped):
    found = bad(shipped, "icscf-deployment", lambda p: kamailio(p)["securityContext"].update(privileged=True))
    assert (
        "Deployment icscf, container kamailio: privileged container (never allowed)"
        in found["ims-no-privilege-outside-allow-list"]
    )
    # The allow-list is per NF: NET_ADMIN is granted to the P-CSCF, not to the S-CSCF.
    found = bad(
        shipped, "scscf-deployment", lambda p: kamailio(p)["securityContext"]["capabilities"].update(add=["NET_ADMIN"])
    )
    (message,) = found["ims-no-privilege-outside-allow-list"]
    assert "adds capability NET_ADMIN for app.kubernetes.io/name=scscf" in message
    with_ipsec = stack_resources(IPSEC)
    assert violations(with_ipsec) == {}
    found = bad(
        with_ipsec,
        "pcscf-deployment",
        lambda p: kamailio(p)["securityContext"]["capabilities"]["add"].append("SYS_ADMIN"),
    )
    (message,) = found["ims-no-privilege-outside-allow-list"]
    assert "adds capability SYS_ADMIN for app.kubernetes.io/name=pcscf" in message


def test_every_allow_list_entry_gives_its_reason():
    for (nf, capability), reason in rules.CAPABILITY_ALLOW_LIST.items():
        assert nf and capability.isupper() and len(reason) > 20, (nf, capability, reason)


def test_image_rule_fires_on_a_floating_or_missing_tag(shipped):
    # Settings already refuse `latest` in valkeyImage; the policy also guards objects that do
    # not come from settings (an init container, a workload someone adds by hand).
    def float_it(props):
        props["spec"]["template"]["spec"]["containers"][0]["image"] = "docker.io/valkey/valkey:latest"
        props["spec"]["template"]["spec"]["initContainers"] = [
            {
                "name": "wait",
                "image": "busybox",
                "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}, "limits": {"memory": "1Mi"}},
            }
        ]

    found = bad(shipped, "valkey-statefulset", float_it)
    assert found["ims-pinned-images"] == [
        "StatefulSet valkey, container wait: image 'busybox' has no tag (the runtime pulls latest)",
        "StatefulSet valkey, container valkey: image 'docker.io/valkey/valkey:latest' uses the floating tag 'latest' (pin a version tag or a digest)",
    ]


@pytest.mark.parametrize(
    "image, pinned",
    [
        ("docker.io/valkey/valkey:8.1.4-alpine", True),
        ("localhost:5001/ims-core/kamailio@sha256:" + "ab" * 32, True),
        ("localhost:5001/ims-core/kamailio:0.1.0", True),
        ("localhost:5001/ims-core/kamailio", False),
        ("docker.io/coredns/coredns:latest", False),
        ("docker.io/library/alpine:edge", False),
        ("registry.example.net/x:stable-alpine", False),
        ("registry.example.net/x@sha256:short", False),
    ],
)
def test_image_pinning(image, pinned):
    assert (rules.image_problem(image) is None) is pinned, rules.image_problem(image)


def test_configmap_rule_fires_on_passwords_and_keys(shipped):
    configs = [name for rtype, name, _ in shipped if rtype == rules.CONFIG_MAP]
    assert "valkey-config" in configs and "pcscf-config" in configs, configs

    def leak_url(props):
        props["data"]["defines.cfg"] += '#!define VALKEY_URL "redis://:hunter2-hunter2@valkey:6379/0"\n'

    found = bad(shipped, "pcscf-config", leak_url)
    assert found == {
        "ims-no-secrets-in-configmaps": [
            "ConfigMap pcscf-config: 'defines.cfg' contains a URL with a password (put it in a Secret)"
        ]
    }
    found = bad(shipped, "valkey-config", lambda p: p["data"].update({"valkey.conf": "requirepass s3cr3t-value\n"}))
    assert any("a Valkey/Redis password" in m for m in found["ims-no-secrets-in-configmaps"])
    found = bad(shipped, "valkey-config", lambda p: p["data"].update({"password": "x"}))
    assert any("key 'password' names a secret" in m for m in found["ims-no-secrets-in-configmaps"])
    found = bad(
        shipped,
        "coredns-zones",
        lambda p: p["data"].update({"subscribers.yaml": "opc: 8e27b6af0e692e750f32667a3b14605d\n"}),
    )
    assert any("a subscriber key" in m for m in found["ims-no-secrets-in-configmaps"])


def test_networkpolicy_rule_fires_when_a_workload_has_none(shipped):
    resources = [r for r in shipped if r[1] != "valkey-ingress"]
    assert len(resources) == len(shipped) - 1
    found = violations(resources)
    (message,) = found["ims-networkpolicy-coverage"]
    assert message.startswith("StatefulSet valkey: no NetworkPolicy selects its pods")
    # A policy of another namespace does not cover it.
    moved = bad(shipped, "valkey-ingress", lambda p: p["metadata"].update(namespace="elsewhere"))
    assert "ims-networkpolicy-coverage" in moved


@pytest.mark.parametrize(
    "label, expected",
    [
        (None, "no pod-security.kubernetes.io/enforce label; its pods need 'privileged'"),
        ("baseline", "enforce=baseline refuses its pods what they need: 'privileged'"),
        ("strict", "enforce=strict is not one of"),
    ],
)
def test_pod_security_rule_fires_on_a_missing_or_wrong_level(shipped, label, expected):
    def relabel(props):
        labels = props["metadata"]["labels"]
        labels.pop(rules.PSA_LABEL)
        if label:
            labels[rules.PSA_LABEL] = label

    found = bad(shipped, "namespace", relabel)
    (message,) = found["ims-pod-security-level"]
    assert expected in message, message


def test_pod_security_rule_refuses_a_looser_level_than_the_pods_need():
    resources = [r for r in stack_resources(BUILDS_OFF) if r[0] in (rules.NAMESPACE, "kubernetes:apps/v1:StatefulSet")]
    # Valkey alone runs non-root with every capability dropped, but without a seccomp profile.
    (message,) = violations(resources)["ims-pod-security-level"]
    assert "enforce=privileged is looser than what its pods need: 'baseline'" in message, message
