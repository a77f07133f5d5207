"""Boot the vm tier's guest: qemu with software emulation, Debian 13's kernel, no network device.

`scripts/vm-image.sh` makes the kernel, initrd and root image once (cached beside the other
tools). Each boot opens the root image with snapshot=on (nothing is written back), shares the
repository read-only and a work directory read-write over 9p, and runs the guest's init
(tests/vm/guest-init.sh), which runs work/run.sh and powers off. The serial console goes to
work/console.log; the guest leaves run.sh's exit status in work/rc.

Never KVM: /dev/kvm on these machines is a paravirtual hypervisor that crashes stock kernels.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.tooling import ROOT, TOOLS_DIR, missing

IMAGE_DIR = TOOLS_DIR / "vm"
HOW_TO_GET = "run: bash scripts/vm-image.sh (as root; the test command does it)"


def require_image() -> Path:
    """The image directory; skips (fails under CI=true) when the image or qemu is missing."""
    for name in ("vmlinuz", "initrd.img", "root.ext4"):
        if not (IMAGE_DIR / name).is_file():
            missing(f"the vm tier's image ({IMAGE_DIR / name})", HOW_TO_GET)
    if shutil.which("qemu-system-x86_64") is None:
        missing("qemu-system-x86_64", "run: bash scripts/install-debian-packages.sh (qemu-system-x86)")
    return IMAGE_DIR


@dataclass
class Boot:
    returncode: int | None  # run.sh's exit status inside the guest; None if it never finished
    seconds: float
    console: str
    run_log: str


def boot(work: Path, *, timeout: float, memory_mb: int = 1024, cpus: int = 2) -> Boot:
    """Boots the guest with `work` shared as /ims/work and waits for it to power off."""
    image = require_image()
    console = work / "console.log"
    argv = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        str(cpus),
        "-m",
        str(memory_mb),
        "-nic",
        "none",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-serial",
        f"file:{console}",
        "-kernel",
        str(image / "vmlinuz"),
        "-initrd",
        str(image / "initrd.img"),
        "-append",
        "root=/dev/vda rw console=ttyS0 init=/sbin/ims-vm-init panic=-1 quiet",
        "-drive",
        f"file={image / 'root.ext4'},format=raw,if=virtio,snapshot=on",
        "-virtfs",
        f"local,path={ROOT},mount_tag=repo,security_model=none,readonly=on",
        "-virtfs",
        f"local,path={work},mount_tag=work,security_model=none",
    ]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        out += f"\n(qemu killed after {timeout}s)".encode()
    seconds = time.monotonic() - started
    rc_file = work / "rc"
    returncode = int(rc_file.read_text().strip()) if rc_file.is_file() else None
    text = console.read_text(errors="replace") if console.is_file() else ""
    run_log = work / "run.log"
    return Boot(
        returncode,
        seconds,
        text + out.decode(errors="replace"),
        run_log.read_text(errors="replace") if run_log.is_file() else "",
    )
