"""Run rtpengine 12.5 (the Debian 13 root) on the rendered config, as the pod runs it, for the live tier.

The daemon gets the product's rendered rtpengine.conf and the same `daemon_args` the Deployment
uses, with the loopback profile's rtpengine address in place of $(POD_IP). It runs as the
image's unprivileged user (65532, set at the chroot), so the test also shows a userspace relay
needs no privilege. It is stopped by its PID. Given a network namespace (the CSCF live tier's), the
daemon runs in it and `ng` talks to it there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from components.base import NON_ROOT_UID
from components.render import rtpengine as render_rtpengine
from components.settings import Settings
from tests import debian_root
from tests.live.ng_client import NgClient
from tests.netns import NetNamespace

START_TIMEOUT = 10.0


@dataclass
class RtpengineDaemon:
    process: subprocess.Popen
    ng: NgClient
    address: str
    config_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class NamespacedNgClient(NgClient):
    """An NG client whose sockets live in a network namespace."""

    def __init__(self, host: str, port: int, netns: NetNamespace, timeout: float = 3.0):
        super().__init__(host, port, timeout)
        self.netns = netns

    def command(self, command: str, *, cookie: bytes | None = None, **arguments):
        with self.netns.entered():
            return super().command(command, cookie=cookie, **arguments)


@contextmanager
def running_rtpengine(
    settings: Settings, *extra_args: str, netns: NetNamespace | None = None
) -> Iterator[RtpengineDaemon]:
    """rtpengine on settings.nf("rtpengine").address with the rendered config; stopped on exit."""
    address = settings.nf("rtpengine").address
    assert address, "the loopback profile gives rtpengine a fixed address"
    config_dir = Path(tempfile.mkdtemp(prefix="rtpengine-"))
    os.chmod(config_dir, 0o755)
    for name, text in render_rtpengine.render(settings).items():
        (config_dir / name).write_text(text)
        os.chmod(config_dir / name, 0o644)
    log_path = config_dir / "rtpengine.log"
    argv = debian_root.command(
        [
            "rtpengine",
            *render_rtpengine.daemon_args(address, settings.media.advertise_address, config_dir=str(config_dir)),
            *extra_args,
        ],
        user=f"{NON_ROOT_UID}:{NON_ROOT_UID}",
    )
    # The child inherits this thread's network namespace; chroot drops to the unprivileged user.
    with open(log_path, "wb") as log, netns.entered() if netns else nullcontext():
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ng = (
        NamespacedNgClient(address, render_rtpengine.NG_PORT, netns, timeout=1.0)
        if netns
        else NgClient(address, render_rtpengine.NG_PORT, timeout=1.0)
    )
    daemon = RtpengineDaemon(process, ng, address, config_dir, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"rtpengine exited with {process.returncode}:\n{daemon.log()}")
            try:
                if daemon.ng.ping() == "pong":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"rtpengine did not answer NG ping within {START_TIMEOUT} s:\n{daemon.log()}")
            time.sleep(0.1)
        daemon.ng.timeout = 3.0
        yield daemon
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        shutil.rmtree(config_dir, ignore_errors=True)
