"""Test images for the node tier, built without a registry or a Docker engine.

The shipped images are Alpine (dockerfiles/); Alpine's repositories and Docker Hub are out of
reach here, so each test image is the Debian 13 root (scripts/debian13-root.sh: Kamailio 6.0,
Valkey 8.1, rtpengine 12.5, the minors the images ship) as one shared base layer, plus a small
layer with what the Dockerfile adds at the same paths (the probe scripts), and the Dockerfile's
user, entrypoint and command. CoreDNS is the CoreDNS binary the tool cache builds (the version
`corednsImage` names), at /coredns like the upstream image. The sandbox image is
tests/node/pause, built here.

Everything lands in one docker-archive tarball (layers are shared by digest) that
`ctr images import` loads into the node's containerd; it is cached by the hash of its inputs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.debian_root import DEBIAN_ROOT
from tests.tooling import ROOT, TOOLS_DIR

CACHE = TOOLS_DIR / "node-images"
PAUSE_SOURCE = Path(__file__).resolve().parent / "pause"
REGISTRY = "ims-node.local/ims-core"
TAG = "node"
PAUSE_IMAGE = "ims-node.local/pause:1"
VALKEY_IMAGE = "ims-node.local/valkey:8.1"
COREDNS_IMAGE = "ims-node.local/coredns:node"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NONROOT = 65532


@dataclass
class Image:
    """One image: its tag, the base root (or none) and the files it adds on top."""

    reference: str
    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    user: str = ""
    working_dir: str = ""
    base: bool = True
    # path in the image -> (bytes | symlink target str, mode, uid)
    files: dict[str, tuple[bytes | str, int, int]] = field(default_factory=dict)
    dirs: dict[str, tuple[int, int]] = field(default_factory=dict)


def stack_config() -> dict[str, str]:
    """The stack settings that make the program reference these images."""
    return {
        "imageBuild": "false",
        "imagePush": "false",
        "imageRegistry": REGISTRY,
        "imageTag": TAG,
        "valkeyImage": VALKEY_IMAGE,
        "corednsImage": COREDNS_IMAGE,
    }


def _script(path: Path) -> tuple[bytes, int, int]:
    return path.read_bytes(), 0o755, 0


def images(pause: bytes, coredns: bytes) -> list[Image]:
    kamailio_dir = ROOT / "dockerfiles" / "kamailio"
    rtpengine_dir = ROOT / "dockerfiles" / "rtpengine" / "alpine"
    # Alpine's nc and nslookup are busybox applets (the probe and init-container scripts call
    # them by name); Debian's busybox has both applets but no links to them.
    applets = {f"usr/local/bin/{a}": ("/usr/bin/busybox", 0o777, 0) for a in ("nc", "nslookup")}
    return [
        Image(PAUSE_IMAGE, ["/pause"], base=False, files={"pause": (pause, 0o755, 0)}),
        Image(
            f"{REGISTRY}/kamailio:{TAG}",
            ["/usr/local/bin/kamailio-start"],
            ["-DD", "-E", "-f", "/etc/kamailio/kamailio.cfg"],
            user=f"{NONROOT}:{NONROOT}",
            files={
                "usr/local/bin/sip-options-probe": _script(kamailio_dir / "sip-options-probe"),
                "usr/local/bin/cscf-ready-probe": _script(kamailio_dir / "cscf-ready-probe"),
                "usr/local/bin/kamailio-start": _script(kamailio_dir / "kamailio-start"),
                **applets,
            },
            dirs={"run/kamailio": (0o755, NONROOT)},
        ),
        Image(
            f"{REGISTRY}/rtpengine-alpine:{TAG}",
            ["/usr/bin/rtpengine"],
            ["--config-file=/etc/rtpengine/rtpengine.conf", "--config-section=rtpengine"],
            user=f"{NONROOT}:{NONROOT}",
            files={"usr/local/bin/rtpengine-ng-ping": _script(rtpengine_dir / "rtpengine-ng-ping")},
        ),
        # Like docker.io/valkey/valkey's Alpine image: valkey-server/valkey-cli on PATH, /data.
        Image(VALKEY_IMAGE, ["valkey-server"], working_dir="/data", files=applets, dirs={"data": (0o755, 999)}),
        # Like docker.io/coredns/coredns: the binary at /coredns, non-root.
        Image(
            COREDNS_IMAGE, ["/coredns"], user=f"{NONROOT}:{NONROOT}", base=False, files={"coredns": (coredns, 0o755, 0)}
        ),
    ]


def _layer(image: Image) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parents: set[str] = set()
        entries = sorted({**{p: None for p in image.files}, **{p: None for p in image.dirs}})
        for path in entries:
            for i in range(1, len(path.split("/"))):
                parent = "/".join(path.split("/")[:i])
                # usr/… parents exist in the base; only make directories the base lacks.
                if parent not in parents and not (image.base and (DEBIAN_ROOT / parent).is_dir()):
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                parents.add(parent)
        for path, (mode, uid) in image.dirs.items():
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, uid
            tar.addfile(info)
        for path, (content, mode, uid) in image.files.items():
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid = mode, uid, uid
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _base_layer(out: Path) -> str:
    """Tar of the Debian 13 root (numeric owners, no /dev, /proc, /sys content); its diff id."""
    subprocess.run(
        [
            "tar", "--numeric-owner", "--xattrs", "-C", str(DEBIAN_ROOT),
            "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./tmp/*",
            "--exclude=./run/*", "--exclude=./var/cache/apt/*", "--exclude=./var/lib/apt/lists/*",
            "-cf", str(out), ".",
        ],
        check=True,
    )  # fmt: skip
    digest = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _inputs_key(pause: bytes, coredns: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(Path(f"{DEBIAN_ROOT}.versions").read_bytes())
    for blob in (pause, coredns, Path(__file__).read_bytes()):
        digest.update(hashlib.sha256(blob).digest())
    for path in sorted((ROOT / "dockerfiles").rglob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_pause(go: str, out_dir: Path) -> bytes:
    out = out_dir / "pause"
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    subprocess.run(
        [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."],
        cwd=PAUSE_SOURCE,
        env=env,
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def archive(go: str, coredns_binary: Path) -> Path:
    """The cached docker-archive of every test image (built when its inputs changed)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    pause = build_pause(go, CACHE)
    coredns = coredns_binary.read_bytes()
    target = CACHE / f"images-{_inputs_key(pause, coredns)}.tar"
    if target.exists():
        return target
    work = CACHE / "work"
    work.mkdir(exist_ok=True)
    base_tar = work / "base.tar"
    base_id = _base_layer(base_tar)
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as out:
        out.add(str(base_tar), arcname=f"{base_id}/layer.tar")
        manifest = []
        for image in images(pause, coredns):
            layer = _layer(image)
            layer_id = hashlib.sha256(layer).hexdigest()
            _add_bytes(out, f"{layer_id}/layer.tar", layer)
            layers = ([base_id] if image.base else []) + [layer_id]
            config = json.dumps(_config(image, layers), sort_keys=True).encode()
            config_id = hashlib.sha256(config).hexdigest()
            _add_bytes(out, f"{config_id}.json", config)
            manifest.append(
                {
                    "Config": f"{config_id}.json",
                    "RepoTags": [image.reference],
                    "Layers": [f"{i}/layer.tar" for i in layers],
                }
            )
        _add_bytes(out, "manifest.json", json.dumps(manifest).encode())
    partial.rename(target)
    base_tar.unlink()
    for old in CACHE.glob("images-*.tar"):
        if old != target:
            old.unlink()
    return target


def _config(image: Image, layers: list[str]) -> dict:
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": image.entrypoint,
            "Cmd": image.cmd or None,
            "User": image.user,
            "Env": [PATH_ENV],
            "WorkingDir": image.working_dir,
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{i}" for i in layers]},
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
