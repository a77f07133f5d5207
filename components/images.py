"""Container images: built from dockerfiles/ with pulumi-docker, or prebuilt references.

A pod spec gets the pushed image's repo digest, so a rebuild with new content rolls the pods
and an unchanged image previews clean. With builds off, the reference
`<imageRegistry>/<image>:<imageTag>` is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from .settings import ROOT, Settings
from .versions import minors

DOCKERFILES = ROOT / "dockerfiles"


@dataclass(frozen=True)
class ImageSpec:
    name: str  # image name under imageRegistry
    context: Path  # build context; the Dockerfile sits in it
    version_args: tuple[str, ...] = ()  # keys of versions.env passed as build arguments

    @property
    def dockerfile(self) -> Path:
        return self.context / "Dockerfile"

    def build_args(self) -> dict[str, str]:
        return {key: minors()[key] for key in self.version_args}


# Every image we build. rtpengine has one image per variant; the stack builds only the chosen one.
IMAGES = {
    "kamailio": ImageSpec("kamailio", DOCKERFILES / "kamailio", ("KAMAILIO_MINOR",)),
    "rtpengine-alpine": ImageSpec("rtpengine-alpine", DOCKERFILES / "rtpengine" / "alpine", ("RTPENGINE_MINOR",)),
    "rtpengine-ubuntu": ImageSpec("rtpengine-ubuntu", DOCKERFILES / "rtpengine" / "ubuntu", ("RTPENGINE_UBUNTU_MINOR",)),
    # open5gs is pinned to a release in its Dockerfile; no test tier runs it (README).
    "open5gs": ImageSpec("open5gs", DOCKERFILES / "open5gs"),
    "open5gs-provision": ImageSpec("open5gs-provision", DOCKERFILES / "open5gs-provision"),
    # CGRateS: the release is pinned once, in scripts/tool-versions.env (the Dockerfile's
    # default CGRATES_VERSION follows it; tests/unit/test_charging.py holds them together).
    "cgrates": ImageSpec("cgrates", DOCKERFILES / "cgrates"),
}


def rtpengine_image(settings: Settings) -> str:
    return f"rtpengine-{settings.rtpengine_variant}"


class ImagePipeline(pulumi.ComponentResource):
    """Builds (or references) our images once per stack; components ask it for references."""

    def __init__(self, name: str, settings: Settings, wanted: list[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("ims:images:ImagePipeline", name, None, opts)
        self.settings = settings
        self.images: dict[str, docker.Image] = {}
        self.references: dict[str, pulumi.Output[str]] = {}
        for key in wanted:
            spec = IMAGES[key]
            reference = settings.images.reference(spec.name)
            if not settings.images.build:
                self.references[key] = pulumi.Output.from_input(reference)
                continue
            image = docker.Image(
                f"{spec.name}-image",
                build=docker.DockerBuildArgs(
                    context=str(spec.context),
                    dockerfile=str(spec.dockerfile),
                    platform=settings.images.platform,
                    args=spec.build_args(),
                ),
                image_name=reference,
                skip_push=not settings.images.push,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.images[key] = image
            # Pushed: the digest, so content changes roll pods. Not pushed (a cluster that
            # shares the builder's image store): the name, which is all there is.
            self.references[key] = image.repo_digest if settings.images.push else image.image_name
        self.register_outputs({"references": self.references})

    def reference(self, key: str) -> pulumi.Output[str]:
        return self.references[key]
