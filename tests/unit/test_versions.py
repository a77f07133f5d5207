"""The images and the tested packages cannot drift apart: both read versions.env.

Each Dockerfile declares the versions.env keys its image pipeline passes (and only those) and
pins its packages with them; the image resources carry them as build arguments; the Valkey
image setting is of the Valkey minor; the Debian 13 root script checks the same keys.
"""

from __future__ import annotations

import re

import pytest

from components.images import IMAGES
from components.settings import ROOT
from components.versions import minors
from tests.unit.conftest import run_program

IMAGE = "docker:index/image:Image"


def dockerfile_args(text: str) -> set[str]:
    return set(re.findall(r"^ARG\s+([A-Z_]+_MINOR)\s*$", text, flags=re.M))


def test_versions_file_names_every_minor_the_tiers_and_images_use():
    assert set(minors()) >= {"KAMAILIO_MINOR", "VALKEY_MINOR", "RTPENGINE_MINOR", "RTPENGINE_UBUNTU_MINOR", "SIPP_MINOR"}
    assert all(re.fullmatch(r"\d+\.\d+", value) for value in minors().values()), minors()


@pytest.mark.parametrize("key", sorted(IMAGES))
def test_each_dockerfile_takes_its_minors_from_versions_env_and_pins_with_them(key):
    spec = IMAGES[key]
    text = spec.dockerfile.read_text(encoding="utf-8")
    declared = dockerfile_args(text)
    assert declared == set(spec.version_args), f"{spec.dockerfile}: ARGs {declared} vs pipeline {spec.version_args}"
    for arg in declared:
        # The value is used (a pin or a check), and no default could stand in for versions.env.
        assert f"${{{arg}}}" in text, f"{spec.dockerfile} declares {arg} but never uses it"
        assert not re.search(rf"^ARG\s+{arg}=", text, flags=re.M)
    if "apk add" in text:
        for package in re.findall(r"\b(kamailio[a-z-]*|rtpengine)=(\S+)", text):
            assert package[1].startswith("~${"), f"{spec.dockerfile}: {package} is not pinned to a versions.env minor"


def test_built_images_get_their_minors_as_build_arguments():
    run = run_program({"rtpengineVariant": "alpine"})
    args = {r.inputs["imageName"].rsplit("/", 1)[1].split(":")[0]: r.inputs["build"].get("args") for r in run.mocks.of_type(IMAGE)}
    assert args["kamailio"] == {"KAMAILIO_MINOR": minors()["KAMAILIO_MINOR"]}
    assert args["rtpengine-alpine"] == {"RTPENGINE_MINOR": minors()["RTPENGINE_MINOR"]}


def test_valkey_image_setting_is_of_the_tested_minor():
    from tests.profiles import stack_settings

    tag = stack_settings("versions").images.valkey.rsplit(":", 1)[1]
    assert tag.startswith(minors()["VALKEY_MINOR"] + "."), tag


def test_debian_root_script_checks_the_same_keys():
    script = (ROOT / "scripts" / "debian13-root.sh").read_text(encoding="utf-8")
    for key in ("KAMAILIO_MINOR", "VALKEY_MINOR", "RTPENGINE_MINOR", "SIPP_MINOR"):
        assert f"${key}" in script, key
