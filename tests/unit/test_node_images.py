"""The node tier's test images start like the shipped images: same entrypoint, command, user and
scripts (the Dockerfiles' ENTRYPOINT/CMD/USER/COPY), so a pod on the real node runs what a pod
of the Alpine image would."""

from __future__ import annotations

import json
import re

import pytest

from components.settings import ROOT
from tests.node import images as node_images

DOCKERFILES = {
    f"{node_images.REGISTRY}/kamailio:{node_images.TAG}": ROOT / "dockerfiles" / "kamailio",
    f"{node_images.REGISTRY}/rtpengine-alpine:{node_images.TAG}": ROOT / "dockerfiles" / "rtpengine" / "alpine",
}


def _instruction(text: str, name: str) -> str:
    found = re.findall(rf"^{name}\s+(.+)$", text, flags=re.M)
    assert found, f"no {name}"
    return found[-1].strip()


@pytest.mark.parametrize("reference", sorted(DOCKERFILES))
def test_the_node_image_starts_like_the_shipped_image(reference):
    directory = DOCKERFILES[reference]
    text = (directory / "Dockerfile").read_text(encoding="utf-8")
    (image,) = [i for i in node_images.images(b"", b"") if i.reference == reference]
    assert image.entrypoint == json.loads(_instruction(text, "ENTRYPOINT"))
    assert image.cmd == json.loads(_instruction(text, "CMD"))
    assert image.user == _instruction(text, "USER")
    for copy in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", text, flags=re.M):
        *sources, target = copy.split()
        for source in sources:
            path = f"{target.strip('/')}/{source}" if target.endswith("/") else target.strip("/")
            assert image.files[path][0] == (directory / source).read_bytes(), path
