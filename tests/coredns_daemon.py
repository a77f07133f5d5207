"""CoreDNS from the tool cache running the rendered Corefile and zones: start, wait ready, stop by PID.

Shared by the render tier (the shipped Corefile parsed and served by the real binary) and the
live tier (the IMS zones served on loopback, inside a network namespace so port 53 collides
with nothing on the host). The live Corefile differs from the shipped one only in where it
listens (bind, port, health/ready addresses), where the zone files are, what `forward` sends
other names to, and the zone reload interval.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from components.render import coredns as render_coredns
from components.settings import Settings
from tests.netns import NetNamespace
from tests.tooling import require_binary

STARTUP_TIMEOUT = 15.0


def coredns_binary() -> str:
    return require_binary("coredns", "go")


def loopback_addresses(settings: Settings) -> dict[str, str]:
    """NF name -> fixed address, as the loopback profile assigns them."""
    return {name: nf.address for name, nf in settings.nfs.items() if nf.address}


def write_files(directory: Path, files: Mapping[str, str]) -> Path:
    """Writes rendered files atomically (a reloading CoreDNS never sees half a zone); returns the Corefile."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = directory / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(directory / name)
    return directory / "Corefile"


def render_loopback(
    settings: Settings,
    directory: Path,
    *,
    upstream: str,
    addresses: Mapping[str, str] | None = None,
    port: int = render_coredns.DNS_PORT,
    zone_reload: str = "1s",
) -> dict[str, str]:
    """The product's renderer, listening on the IMS DNS's address (`addresses["coredns"]`)."""
    addresses = loopback_addresses(settings) if addresses is None else addresses
    bind = addresses.get("coredns")
    assert bind, "CoreDNS needs an address: the loopback profile's, or addresses['coredns']"
    return render_coredns.render(
        settings,
        addresses,
        zone_dir=str(directory),
        bind=bind,
        port=port,
        upstream=upstream,
        health=f"{bind}:{render_coredns.HEALTH_PORT}",
        ready=f"{bind}:{render_coredns.READY_PORT}",
        zone_reload=zone_reload,
    )


def inside(netns: NetNamespace | None):
    """Run this thread's sockets inside `netns` (or on the host)."""
    return netns.entered() if netns else contextlib.nullcontext()


@dataclass
class CoreDns:
    process: subprocess.Popen
    log_path: Path
    netns: NetNamespace | None
    ready_url: str
    startup_seconds: float = 0.0
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Stops this process (by its PID only) and waits for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start(
    corefile: Path,
    *,
    ready_url: str,
    netns: NetNamespace | None = None,
    log_path: Path | None = None,
    timeout: float = STARTUP_TIMEOUT,
) -> CoreDns:
    """Starts CoreDNS on `corefile` and waits until its ready plugin answers 200."""
    argv = [coredns_binary(), "-conf", str(corefile)]
    log_path = log_path or corefile.with_name(f"{corefile.name}.log")
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            (netns.prefix() if netns else []) + argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=corefile.parent,
        )
    daemon = CoreDns(process=process, log_path=log_path, netns=netns, ready_url=ready_url, argv=argv)
    deadline = started + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"coredns exited with {process.returncode}:\n{daemon.log()}")
        if is_ready(ready_url, netns):
            daemon.startup_seconds = time.monotonic() - started
            return daemon
        time.sleep(0.02)
    daemon.stop()
    raise RuntimeError(f"coredns not ready at {ready_url} after {timeout}s:\n{daemon.log()}")


# Never through a proxy from the environment: every request stays on loopback.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def is_ready(url: str, netns: NetNamespace | None = None) -> bool:
    with inside(netns):
        try:
            with _DIRECT.open(url, timeout=0.5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False


@contextlib.contextmanager
def serving(
    settings: Settings,
    directory: Path,
    *,
    netns: NetNamespace | None,
    upstream: str = "127.0.0.54",
    addresses: Mapping[str, str] | None = None,
) -> Iterator[CoreDns]:
    """The IMS DNS of `settings` on its loopback address, port 53, for as long as the block runs.

    `addresses` (NF -> IPv4, "coredns" being where it listens) replaces the loopback profile's
    fixed addresses, e.g. to stand in for the ClusterIPs of a Kubernetes stack.

    Kamailio tests resolve through it by creating their namespace with
    ``NetNamespace(name, hosts={}, nameserver=settings.nf("coredns").address)`` and starting it
    inside with ``serving(settings, tmp_dir, netns=ns)``. Other names go to `upstream` (nothing
    listens there unless the test starts something: they fail, on loopback).
    """
    directory.mkdir(parents=True, exist_ok=True)
    resolv = directory / "upstream-resolv.conf"
    resolv.write_text(f"nameserver {upstream}\n", encoding="utf-8")
    addresses = loopback_addresses(settings) if addresses is None else addresses
    corefile = write_files(directory, render_loopback(settings, directory, upstream=str(resolv), addresses=addresses))
    bind = addresses["coredns"]
    daemon = start(corefile, ready_url=f"http://{bind}:{render_coredns.READY_PORT}/ready", netns=netns)
    try:
        yield daemon
    finally:
        daemon.stop()
