"""rtpengine under mocks: variants, media exposure, NG protection, and the option combinations refused."""

from __future__ import annotations

import json

import pytest

from components.render import rtpengine as render_rtpengine
from components.settings import SettingsError, from_mapping
from tests.tooling import ROOT
from tests.unit.conftest import BASE_CONFIG, container, pod_spec, run_program

IMAGE = "docker:index/image:Image"
RTPENGINE_DIR = ROOT / "dockerfiles" / "rtpengine"


# Fixed Service addresses: the mocks hand out ClusterIPs in registration order, which may vary
# between runs and would show up in the DNS zone as a difference that has nothing to do with rtpengine.
FIXED_ADDRESSES = {
    f"{nf}Address": f"10.96.1.{i}"
    for i, nf in enumerate(("pcscf", "icscf", "scscf", "valkey", "coredns", "rtpengine", "hss", "pcrf"), start=10)
}


@pytest.fixture(scope="module")
def variants():
    runs = {v: run_program({**FIXED_ADDRESSES, "rtpengineVariant": v}) for v in ("alpine", "ubuntu")}
    for run in runs.values():
        assert run.error is None, run.error
    return runs


def _inputs_by_resource(run) -> dict[tuple[str, str], str]:
    return {(r.typ, r.name): json.dumps(r.inputs, sort_keys=True, default=str) for r in run.resources}


def test_alpine_and_ubuntu_are_different_images_built_from_different_dockerfiles(variants):
    alpine = (RTPENGINE_DIR / "alpine" / "Dockerfile").read_text()
    ubuntu = (RTPENGINE_DIR / "ubuntu" / "Dockerfile").read_text()
    # Which rtpengine minor each installs is tests/unit/test_versions.py's business (versions.env).
    assert "FROM alpine:3.23" in alpine and "rtpengine=~${RTPENGINE_MINOR}" in alpine
    assert "FROM ubuntu:24.04" in ubuntu and "rtpengine-daemon=${RTPENGINE_DEB}" in ubuntu
    # Transcoding (AMR/AMR-WB encoders) only in the ubuntu image.
    assert "libavcodec-extra" in ubuntu and "libavcodec-extra" not in alpine
    for variant, run in variants.items():
        (image,) = [r for r in run.mocks.of_type(IMAGE) if "rtpengine" in r.inputs["imageName"]]
        assert image.name == f"rtpengine-{variant}-image"
        assert image.inputs["build"]["dockerfile"].endswith(f"dockerfiles/rtpengine/{variant}/Dockerfile")
        assert container(run.mocks.named("rtpengine-deployment"))["image"].startswith(
            f"localhost:5001/ims-core/rtpengine-{variant}@sha256:"
        )


def test_switching_the_variant_changes_only_the_rtpengine_image_and_workload(variants):
    """...and the P-CSCF pod's start-up wait for rtpengine, which runs the rtpengine image's NG
    probe: the P-CSCF rolls once, nothing else changes."""
    alpine, ubuntu = (_inputs_by_resource(variants[v]) for v in ("alpine", "ubuntu"))
    only_alpine = set(alpine) - set(ubuntu)
    only_ubuntu = set(ubuntu) - set(alpine)
    changed = {key for key in set(alpine) & set(ubuntu) if alpine[key] != ubuntu[key]}
    assert only_alpine == {(IMAGE, "rtpengine-alpine-image")}
    assert only_ubuntu == {(IMAGE, "rtpengine-ubuntu-image")}
    deployment = "kubernetes:apps/v1:Deployment"
    assert changed == {(deployment, "rtpengine-deployment"), (deployment, "pcscf-deployment")}, sorted(changed)
    pcscf = [json.loads(v[(deployment, "pcscf-deployment")]) for v in (alpine, ubuntu)]
    for spec in pcscf:
        spec["spec"]["template"]["spec"]["initContainers"][-1].pop("image")
    assert pcscf[0] == pcscf[1], "only the rtpengine wait's image may differ in the P-CSCF"


def test_the_two_images_ship_the_same_ng_probe_script():
    alpine = RTPENGINE_DIR / "alpine" / "rtpengine-ng-ping"
    ubuntu = RTPENGINE_DIR / "ubuntu" / "rtpengine-ng-ping"
    assert alpine.read_bytes() == ubuntu.read_bytes()
    assert alpine.stat().st_mode & 0o111 and ubuntu.stat().st_mode & 0o111


def test_transcoding_codecs_are_accepted_with_ubuntu_and_reach_the_offer_flags():
    settings = from_mapping(
        {**BASE_CONFIG, "rtpengineVariant": "ubuntu", "rtpengineTranscodingCodecs": ["AMR-WB", "PCMA"]}, stack="t"
    )
    assert settings.media.transcoding_codecs == ("AMR-WB", "PCMA")
    assert render_rtpengine.offer_flags(settings) == [
        "replace-origin",
        "replace-session-connection",
        "codec-transcode-AMR-WB",
        "codec-transcode-PCMA",
    ]
    alpine = from_mapping(BASE_CONFIG, stack="t")
    assert render_rtpengine.offer_flags(alpine) == ["replace-origin", "replace-session-connection"]


def test_default_is_a_userspace_relay_on_the_host_network_with_recreate(variants):
    deployment = variants["alpine"].mocks.named("rtpengine-deployment")
    spec = pod_spec(deployment)
    assert deployment.inputs["spec"]["strategy"] == {"type": "Recreate"}
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    c = container(deployment)
    assert c["args"] == [
        "--config-file=/etc/rtpengine/rtpengine.conf",
        "--config-section=rtpengine",
        "--interface=$(POD_IP)",
        "--listen-ng=$(POD_IP):2223",
    ]
    assert [p["containerPort"] for p in c["ports"]] == [2223]
    security = c["securityContext"]
    assert security["runAsNonRoot"] is True and security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    config = variants["alpine"].mocks.named("rtpengine-config").inputs["data"]["rtpengine.conf"]
    assert "table = -1" in config and "port-min = 40000" in config and "port-max = 40999" in config


def test_readiness_probe_runs_the_ng_ping_script_the_images_ship(variants):
    probe = container(variants["ubuntu"].mocks.named("rtpengine-deployment"))["readinessProbe"]
    assert probe["exec"]["command"] == ["/usr/local/bin/rtpengine-ng-ping"]
    for variant in ("alpine", "ubuntu"):
        dockerfile = (RTPENGINE_DIR / variant / "Dockerfile").read_text()
        assert "COPY rtpengine-ng-ping /usr/local/bin/rtpengine-ng-ping" in dockerfile


def test_ng_is_reachable_only_from_the_pcscf_and_media_from_anywhere(variants):
    rules = variants["alpine"].mocks.named("rtpengine-ingress").inputs["spec"]["ingress"]
    ng, media = rules
    assert ng["ports"] == [{"port": 2223, "protocol": "UDP"}]
    assert [peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in ng["from"]] == ["pcscf"]
    assert media["ports"] == [{"port": 40000, "endPort": 40999, "protocol": "UDP"}]
    assert "from" not in media


def test_host_ports_map_every_media_port_and_advertise_the_node_address():
    run = run_program({"rtpengineMediaExposure": "hostPort", "rtpenginePortMin": 40000, "rtpenginePortMax": 40099})
    assert run.error is None, run.error
    deployment = run.mocks.named("rtpengine-deployment")
    spec = pod_spec(deployment)
    assert not spec.get("hostNetwork")
    assert deployment.inputs["spec"]["strategy"] == {"type": "Recreate"}
    c = container(deployment)
    media = [p for p in c["ports"] if p.get("hostPort")]
    assert [p["hostPort"] for p in media] == list(range(40000, 40100))
    assert all(p["containerPort"] == p["hostPort"] and p["protocol"] == "UDP" for p in media)
    assert "--interface=$(POD_IP)!$(HOST_IP)" in c["args"]
    assert {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}} in c["env"]


def test_an_advertise_address_goes_into_sdp_through_the_interface_option():
    run = run_program({"rtpengineAdvertiseAddress": "203.0.113.10"})
    assert run.error is None, run.error
    assert "--interface=$(POD_IP)!203.0.113.10" in container(run.mocks.named("rtpengine-deployment"))["args"]


def test_a_port_range_change_rolls_the_pod():
    default = run_program({})
    narrower = run_program({"rtpenginePortMax": 40499})
    names = [
        r.mocks.named("rtpengine-deployment").inputs["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
        for r in (default, narrower)
    ]
    assert names[0] != names[1]


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"rtpengineTranscodingCodecs": ["AMR-WB"]},
            "rtpengineTranscodingCodecs = ['AMR-WB'] with rtpengineVariant = 'alpine': the alpine image only relays media",
        ),
        (
            {"rtpengineVariant": "ubuntu", "rtpengineTranscodingCodecs": ["EVS"]},
            "rtpengineTranscodingCodecs = ['EVS']: 'EVS' not supported",
        ),
        (
            {"rtpengineMediaExposure": "hostPort"},
            "rtpenginePortMin = 40000, rtpenginePortMax = 40999: 1000 ports with rtpengineMediaExposure = hostPort; "
            "at most 200",
        ),
        (
            {"rtpenginePortMin": 30000, "rtpenginePortMax": 30999},
            "overlaps the Kubernetes NodePort range 30000-32767",
        ),
        ({"rtpenginePortMin": 41000}, "need 1024 < rtpenginePortMin <= rtpenginePortMax <= 65535"),
        ({"rtpengineMediaExposure": "loadBalancer"}, "rtpengineMediaExposure = 'loadBalancer': must be one of"),
        ({"rtpengineAdvertiseAddress": "node-1"}, "rtpengineAdvertiseAddress = 'node-1': must be an IPv4 address"),
        ({"rtpengineVariant": "debian"}, "rtpengineVariant = 'debian': must be one of alpine, ubuntu"),
    ],
)
def test_bad_rtpengine_options_fail_clearly_and_create_nothing(config, message):
    run = run_program(config)
    assert run.error is not None
    assert message in str(run.error)
    assert run.resources == []


def test_every_rtpengine_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as info:
        from_mapping(
            {
                **BASE_CONFIG,
                "rtpengineMediaExposure": "hostPort",
                "rtpengineTranscodingCodecs": ["PCMA"],
                "rtpengineAdvertiseAddress": "x",
            },
            stack="t",
        )
    keys = [e.split(" ", 1)[0] for e in info.value.errors]
    assert keys == ["rtpenginePortMin", "rtpengineAdvertiseAddress", "rtpengineTranscodingCodecs"], info.value.errors
